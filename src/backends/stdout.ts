import type { Backend, BackendContext, BackendFactory } from './types.js';
import { BackendError, causeText, closedError, encodeFailed } from './backend-error.js';
import { toJson } from './json-line.js';

const NAME = 'stdout';

/**
 * Each item as one JSON line through `context.writeLine` (the master's stdout,
 * or the terminal of `rezina run`). Encoding is json-line.ts's: Buffers as
 * base64 strings, Dates as ISO strings. No options.
 */
export const createStdoutBackend: BackendFactory = async (_options, context: BackendContext): Promise<Backend> => {
  let closed = false;
  return {
    async open() {
      if (closed) throw closedError(NAME, NAME);
    },
    async write(items) {
      if (closed) throw closedError(NAME, NAME);
      // Encode the whole batch first, so an item that cannot be encoded prints nothing of the batch.
      const lines = items.map((item, i) => {
        try {
          return toJson(item);
        } catch (err) {
          throw encodeFailed(NAME, NAME, `item ${i} of the batch cannot be written as JSON: ${causeText(err)}`, err);
        }
      });
      for (const line of lines) {
        try {
          context.writeLine(line);
        } catch (err) {
          throw new BackendError('E_BACKEND_WRITE', NAME, NAME, `stdout is not writable: ${causeText(err)}`, { cause: err });
        }
      }
    },
    async close() {
      closed = true;
    },
  };
};
