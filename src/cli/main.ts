#!/usr/bin/env node
/**
 * The rezina command line: the one place that wires master, worker, spec and
 * client together, and maps errors to exit codes (0 ok, 1 failure, 2 invalid
 * input, 3 master unreachable).
 */
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import { ConfigError, RezinaError, describeError, formatDiagnostic, type Diagnostic } from '../errors.js';
import { createLogger } from '../log.js';
import { Master } from '../master/master.js';
import type { RunSummary } from '../master/runs.js';
import { previewFireTimes, zoneOf } from '../schedule/index.js';
import { loadTypologyFile } from '../spec/load.js';
import type { ScheduleSpec } from '../spec/types.js';
import { Worker } from '../worker/worker.js';
import { request } from './client.js';
import { collectApplyFiles, typologyFilesOf } from './collect.js';
import { table } from './format.js';
import { onShutdownSignal } from './signals.js';

const DEFAULT_MASTER = process.env.REZINA_MASTER ?? '127.0.0.1:12345';

const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
const err = (s: string) => process.stderr.write(s.endsWith('\n') ? s : `${s}\n`);

function intOption(name: string, min = 0, max = 65535) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new CommanderError(2, 'E_USAGE', `${name} must be a whole number from ${min} to ${max}, got "${v}"`);
    return n;
  };
}

const msOption = (name: string) => intOption(name, 10, 3_600_000);

function summaryLine(s: RunSummary): string {
  return `run ${s.id} of ${s.typology} finished in ${s.seconds.toFixed(1)} s: ${s.in} in, ${s.out} out, ${s.dropped} dropped, ${s.failed} failed${s.errors.length ? ` (${s.errors.join('; ')})` : ''}`;
}

export function buildProgram(): Command {
  const program = new Command('rezina')
    .description('Run your code in parallel across processes and machines, described by YAML typologies.')
    .version('0.1.0')
    .showHelpAfterError()
    .exitOverride();

  const masterCmd = program
    .command('master')
    .alias('runmaster')
    .description('run a master: watch a workspace of typology files and run them on workers')
    .option('--host <host>', 'interface to bind', '127.0.0.1')
    .option('-p, --port <port>', 'ZeroMQ port for workers and the CLI', intOption('--port'), 12345)
    .option('--web-port <port>', 'web console port (reserved)', intOption('--web-port'), 31218)
    .option('-w, --workspace <dir>', 'directory of typology files to watch', 'pipelines')
    .option('--state-dir <dir>', 'where state and dead letters are kept', '.rezina')
    .option('--heartbeat-interval <ms>', 'how often workers send heartbeats', msOption('--heartbeat-interval'), 500)
    .option('--heartbeat-timeout <ms>', 'a worker silent this long is lost', msOption('--heartbeat-timeout'), 2000)
    .option('--stage-silence <ms>', 'a stage process silent this long (stuck in synchronous code) is killed', msOption('--stage-silence'), 10_000)
    .action(async (o) => {
      if (o.heartbeatTimeout <= o.heartbeatInterval) throw new CommanderError(2, 'E_USAGE', '--heartbeat-timeout must be longer than --heartbeat-interval');
      const master = await Master.create({
        host: o.host,
        port: o.port,
        webPort: o.webPort,
        workspace: path.resolve(o.workspace),
        stateDir: o.stateDir,
        heartbeatMs: o.heartbeatInterval,
        heartbeatTimeoutMs: o.heartbeatTimeout,
        stageSilenceMs: o.stageSilence,
      });
      onShutdownSignal((sig) => master.shutdown(sig));
      err(`rezina master listening on ${o.host}:${master.port}, watching ${path.resolve(o.workspace)}`);
      await master.run();
    });
  void masterCmd;

  program
    .command('worker')
    .alias('runworker')
    .description('join a master and run the stage processes it places here')
    .option('-m, --master <host:port>', 'master address', DEFAULT_MASTER)
    .option('--name <name>', 'worker name shown by `rezina get workers`')
    .action(async (o) => {
      const worker = await Worker.create({ master: o.master, name: o.name });
      onShutdownSignal((sig) => worker.shutdown(sig));
      await worker.run();
    });

  program
    .command('run')
    .description('run one typology on this machine: a master and a worker in one command')
    .argument('<file>', 'typology YAML file')
    .option('--once', 'run once now, print a summary, and exit when the run has finished')
    .option('-p, --port <port>', 'ZeroMQ port (default: any free port)', intOption('--port'), 0)
    .option('--state-dir <dir>', 'where state and dead letters are kept (default: .rezina/run/NAME)')
    .option('-v, --verbose', 'log every placement and run (JSON lines on stderr)')
    .action(async (file: string, o) => {
      const abs = path.resolve(file);
      const loaded = await loadTypologyFile(abs);
      if (!loaded.ok) throw new ConfigError(`${file} is not valid`, loaded.diagnostics);
      const log = createLogger('rezina', {}, o.verbose ? 'info' : 'warn');
      // The worker shares this process's event loop: forking many stage processes
      // can stall it for seconds, which must not count as a lost worker.
      const stateDir = o.stateDir ?? path.join('.rezina', 'run', loaded.typology.name);
      const master = await Master.create({ files: [abs], port: o.port, stateDir, schedules: !o.once, watch: !o.once, rememberOnce: false, heartbeatTimeoutMs: 15_000, log });
      const worker = await Worker.create({ master: `127.0.0.1:${master.port}`, name: 'local', log: log.child({ worker: 'local' }) });
      const stop = async (reason: string) => {
        await master.shutdown(reason);
        await worker.shutdown(reason);
      };
      onShutdownSignal(stop);
      const name = loaded.typology.name;
      if (o.once) {
        const finished = new Promise<RunSummary>((resolve) => master.on('run-finished', (s: RunSummary) => resolve(s)));
        // Time the run, not the start-up of its processes.
        try {
          if (!(await master.whenReady(name))) {
            if (master.state === 'running') throw new RezinaError('E_STAGE', `the processes of ${name} did not all start within 60 s`);
            return; // interrupted (Ctrl-C)
          }
        } catch (e) {
          await stop('cannot start');
          throw e instanceof RezinaError ? e : new RezinaError('E_STAGE', describeError(e));
        }
        master.triggerRun(name);
        const s = await Promise.race([finished, master.run().then(() => undefined)]);
        if (!s) return; // interrupted (Ctrl-C) before the run finished
        err(summaryLine(s));
        await stop('run finished');
        return;
      }
      master.on('run-finished', (s: RunSummary) => err(summaryLine(s)));
      err(`rezina is running ${name} from ${file} (Ctrl-C to stop); saved edits apply at once`);
      await master.run();
      await worker.run();
    });

  program
    .command('validate')
    .description('check typology files offline; errors are printed as file:line:col')
    .argument('<files...>', 'typology YAML files or directories')
    .action(async (files: string[]) => {
      const problems: Diagnostic[] = [];
      for (const f of files.flatMap(typologyFilesOf)) {
        const r = await loadTypologyFile(f);
        if (r.ok) out(`${path.relative(process.cwd(), f) || f}: ok (typology ${r.typology.name})`);
        else problems.push(...r.diagnostics);
      }
      if (problems.length > 0) throw new ConfigError(`${problems.length} problem${problems.length === 1 ? '' : 's'} found`, problems);
    });

  program
    .command('apply')
    .description('send typology files (and the modules they name) to a master; prints created / configured / unchanged')
    .requiredOption('-f, --file <path>', 'typology YAML file or directory')
    .option('--dry-run', 'show what would change; change nothing')
    .option('-m, --master <host:port>', 'master address', DEFAULT_MASTER)
    .action(async (o) => {
      const bundles = await collectApplyFiles(typologyFilesOf(o.file));
      const outcomes = (await request(o.master, 'apply', { files: bundles, dryRun: o.dryRun === true })) as Array<{ typology: string; action: string; changes: string[] }>;
      for (const r of outcomes) {
        out(`typology/${r.typology} ${r.action}${o.dryRun ? ' (dry run)' : ''}`);
        for (const c of r.changes) out(`  ${c}`);
      }
    });

  program
    .command('diff')
    .description('show what `apply` would change, without applying')
    .requiredOption('-f, --file <path>', 'typology YAML file or directory')
    .option('-m, --master <host:port>', 'master address', DEFAULT_MASTER)
    .action(async (o) => {
      const bundles = await collectApplyFiles(typologyFilesOf(o.file));
      const outcomes = (await request(o.master, 'apply', { files: bundles, dryRun: true })) as Array<{ typology: string; action: string; changes: string[] }>;
      for (const r of outcomes) {
        out(`typology/${r.typology}: ${r.action === 'created' ? 'new' : r.action}`);
        for (const c of r.changes) out(`  ${c}`);
      }
    });

  const get = program.command('get').description('list typologies, workers, runs or dead letters');
  const listing = (what: string, columns: string[]) =>
    get
      .command(what)
      .argument('[typology]', 'only this typology')
      .option('-m, --master <host:port>', 'master address', DEFAULT_MASTER)
      .option('-o, --output <format>', 'table or json', 'table')
      .action(async (typology: string | undefined, o) => {
        const rows = (await request(o.master, `get.${what}`, { typology })) as Array<Record<string, unknown>>;
        if (o.output === 'json') {
          out(JSON.stringify(rows, null, 2));
          return;
        }
        out(table(rows, columns));
        if (what === 'typologies') for (const r of rows) if (r.error) err(`${r.name || r.file}: ${String(r.error)}`);
      });
  listing('typologies', ['name', 'version', 'status', 'processes', 'runsInProgress', 'nextRun', 'applied']);
  listing('workers', ['name', 'host', 'pid', 'processes', 'threads', 'lastSeenMs']);
  listing('runs', ['typology', 'id', 'version', 'status', 'seconds', 'in', 'out', 'dropped', 'failed', 'errors']);
  listing('deadletters', ['id', 'typology', 'stage', 'run', 'attempts', 'error', 'at']);

  program
    .command('describe')
    .description('show one typology: version history, stages, processes, recent runs, last error')
    .argument('<typology>')
    .option('-m, --master <host:port>', 'master address', DEFAULT_MASTER)
    .action(async (typology: string, o) => {
      out(JSON.stringify(await request(o.master, 'describe', { typology }), null, 2));
    });

  for (const [cmd, what] of [
    ['start', 'resume the schedule of a stopped typology'],
    ['stop', 'stop scheduling a typology; running items finish'],
    ['trigger', 'start one run now, whatever the schedule'],
  ] as const) {
    program
      .command(cmd)
      .description(what)
      .argument('<typology>')
      .option('-m, --master <host:port>', 'master address', DEFAULT_MASTER)
      .action(async (typology: string, o) => {
        out(JSON.stringify(await request(o.master, cmd === 'trigger' ? 'run' : cmd, { typology })));
      });
  }

  program
    .command('scale')
    .description('change the processes or threads of a notch (or the bocca): edits the typology file, then it applies like any edit')
    .argument('<typology>')
    .argument('<stage>', 'notch name, or "bocca"')
    .option('--processes <n>', 'processes', intOption('--processes'))
    .option('--threads <n>', 'threads per process', intOption('--threads'))
    .option('-m, --master <host:port>', 'master address', DEFAULT_MASTER)
    .action(async (typology: string, stage: string, o) => {
      if (o.processes === undefined && o.threads === undefined) throw new CommanderError(2, 'E_USAGE', 'give --processes and/or --threads');
      const r = (await request(o.master, 'scale', { typology, stage, processes: o.processes, threads: o.threads })) as { version: number; changes: string[] };
      out(`typology/${typology} scaled (version ${r.version})`);
      for (const c of r.changes) out(`  ${c}`);
    });

  program
    .command('delete')
    .description('remove a typology: deletes its file from the workspace; queued items drain first')
    .argument('<typology>')
    .option('-m, --master <host:port>', 'master address', DEFAULT_MASTER)
    .action(async (typology: string, o) => {
      await request(o.master, 'delete', { typology });
      out(`typology/${typology} deleted`);
    });

  program
    .command('replay')
    .description('send dead letters back into the stage that failed them, as a new run')
    .argument('<typology>')
    .option('--id <id...>', 'only these dead letters (ids from `get deadletters`)')
    .option('-m, --master <host:port>', 'master address', DEFAULT_MASTER)
    .action(async (typology: string, o) => {
      const r = (await request(o.master, 'replay', { typology, ids: o.id })) as { run?: number; replayed: number; kept: number };
      out(r.replayed > 0 ? `replayed ${r.replayed} dead letter${r.replayed === 1 ? '' : 's'} as run ${r.run}${r.kept ? ` (${r.kept} kept: their stage no longer exists)` : ''}` : 'nothing to replay');
    });

  program
    .command('schedule')
    .description('preview the next fire times of a typology file, with their time zone')
    .argument('<file>', 'typology YAML file')
    .option('-n, --next <n>', 'how many', intOption('--next'), 5)
    .action(async (file: string, o) => {
      const r = await loadTypologyFile(path.resolve(file), { checkModules: false });
      if (!r.ok) throw new ConfigError(`${file} is not valid`, r.diagnostics);
      const spec: ScheduleSpec = r.typology.schedule;
      const zone = zoneOf(spec);
      const times = previewFireTimes(spec, o.next, Date.now());
      if (times.length === 0) out('no further runs');
      const fmt = new Intl.DateTimeFormat('sv-SE', { timeZone: zone, dateStyle: 'short', timeStyle: 'medium' });
      for (const t of times) out(`${fmt.format(new Date(t))} ${zone}  (${new Date(t).toISOString()})`);
    });

  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.exitCode === 0) return 0;
      if (e.code !== 'commander.help' && !e.message.startsWith('error:')) err(`error: ${e.message}`);
      return e.exitCode === 1 ? 2 : e.exitCode;
    }
    if (e instanceof ConfigError || (e instanceof RezinaError && (e as { diagnostics?: Diagnostic[] }).diagnostics?.length)) {
      const diags = (e as { diagnostics?: Diagnostic[] }).diagnostics ?? [];
      for (const d of diags) err(formatDiagnostic(d));
      err(`error: ${e.message}`);
      return 2;
    }
    if (e instanceof RezinaError) {
      err(`error: ${e.message}`);
      return e.exitCode;
    }
    err(`error: ${describeError(e)}`);
    return 1;
  }
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
    // A command is done here (daemons only after their orderly shutdown):
    // sockets and timers left behind must not keep the process alive.
    setTimeout(() => process.exit(code), 100).unref();
  },
  (e) => {
    err(`error: ${describeError(e)}`);
    process.exitCode = 1;
  },
);
