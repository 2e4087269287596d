/**
 * The bocca backends. `builtinBackends()` is the explicit list the stage
 * runtime looks names up in; tests build their own registry with only what
 * they need. Each backend file keeps its driver to itself.
 */
import type { BackendFactory, BackendRegistry } from './types.js';
import { createFileBackend } from './file.js';
import { createModuleBackend } from './module.js';
import { createMysqlBackend } from './mysql.js';
import { createPostgresBackend } from './postgres.js';
import { createRedisBackend } from './redis.js';
import { createSqliteBackend } from './sqlite.js';
import { createStdoutBackend } from './stdout.js';

export function builtinBackends(): BackendRegistry {
  return new Map<string, BackendFactory>([
    ['stdout', createStdoutBackend],
    ['file', createFileBackend],
    ['sqlite', createSqliteBackend],
    ['postgres', createPostgresBackend],
    ['mysql', createMysqlBackend],
    ['redis', createRedisBackend],
    ['module', createModuleBackend],
  ]);
}

export type { Backend, BackendContext, BackendFactory, BackendRegistry } from './types.js';
export { BackendError, type BackendErrorCode } from './backend-error.js';
export { toJson } from './json-line.js';
export { createFileBackend, type FileBackendOptions } from './file.js';
export { createModuleBackend, type CustomBocca } from './module.js';
export { createMysqlBackend, type MysqlBackendOptions } from './mysql.js';
export { createPostgresBackend, type PostgresBackendOptions } from './postgres.js';
export { createRedisBackend, type RedisBackendOptions } from './redis.js';
export { createSqliteBackend, type SqliteBackendOptions } from './sqlite.js';
export { createStdoutBackend } from './stdout.js';
