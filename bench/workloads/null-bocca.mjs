/**
 * A custom bocca (`backend: module`) that writes nowhere: open, write and
 * close do nothing, so a benchmark measures the pipeline, not a database.
 */
export default class NullBocca {
  open() {}
  write(_itemOrBatch) {}
  close() {}
}
