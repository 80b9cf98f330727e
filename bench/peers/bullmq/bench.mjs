// BullMQ on its PostgreSQL backend, no-op jobs: the peer that bench/queue.py measures against.
//
//   node bench.mjs --url postgresql://postgres@127.0.0.1:5432/kgc_qbench_bullmq \
//       --mode throughput --jobs 3000 --concurrency 4 [--count-queries]
//   node bench.mjs --url ... --mode latency --samples 200 --concurrency 4
//
// The database must exist and be a scratch one: BullMQ creates its schema (`bullmq`) there.
// Prints one JSON line with the figures. No Redis anywhere: every Queue and Worker is built
// with the `createPostgresBackend` factory, and no Redis client package is installed.
//
// throughput: adds N jobs with one addBulk (one statement), then starts one Worker with the
//   given concurrency and times the first job start to the last job completion (the moment
//   the worker reports it completed, after its database round trip), in this process.
// latency: an idle worker; one job at a time, the time from just before queue.add() to the
//   processor's start. The add's own round trip is inside the figure.

import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { Queue, Worker, createPostgresBackend } from 'bullmq';

const QUEUE = 'bench';
const TIMEOUT_MS = 15 * 60 * 1000;

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    mode: { type: 'string', default: 'throughput' },
    jobs: { type: 'string', default: '3000' },
    samples: { type: 'string', default: '200' },
    concurrency: { type: 'string', default: '4' },
    'count-queries': { type: 'boolean', default: false },
  },
});
if (!args.url) {
  throw new Error('--url is required');
}

// BullMQ builds and owns a pg.Pool from this config (default pool size: pg's 10).
// `migrate: true` lets the first Queue create or upgrade the schema; the Worker only checks it.
const producerOpts = { connection: { connectionString: args.url, migrate: true } };
const workerOpts = (concurrency) => ({
  connection: { connectionString: args.url },
  concurrency,
  autorun: false,
});

function percentile(values, pct) {
  const ordered = [...values].sort((a, b) => a - b);
  return ordered[Math.min(ordered.length - 1, Math.round((pct / 100) * (ordered.length - 1)))];
}

const STAT_COLUMNS = ['xact_commit', 'xact_rollback', 'tup_inserted', 'tup_updated', 'tup_deleted'];

// Server-side counters of this database. Read after the measured connections have closed:
// a backend flushes its counters when it exits, so nothing is left pending.
async function databaseStats(client) {
  for (let i = 0; i < 100; i++) {
    const { rows } = await client.query(
      'SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
    );
    if (rows[0].n === 0) break;
    await sleep(50);
  }
  await client.query('SELECT pg_stat_clear_snapshot()');
  const { rows } = await client.query(
    `SELECT ${STAT_COLUMNS.join(', ')} FROM pg_stat_database WHERE datname = current_database()`,
  );
  return Object.fromEntries(STAT_COLUMNS.map((c) => [c, Number(rows[0][c])]));
}

// Counts the round trips the worker's backend makes, by command (opt-in: it wraps the backend).
function countQueries(worker) {
  const backend = worker.getBackend();
  const counts = {};
  const run = backend.run.bind(backend);
  backend.run = (command, params) => {
    counts[command] = (counts[command] ?? 0) + 1;
    return run(command, params);
  };
  return counts;
}

async function throughput(jobs, concurrency) {
  const queue = new Queue(QUEUE, producerOpts, createPostgresBackend);
  await queue.waitUntilReady();
  const addStart = performance.now();
  await queue.addBulk(Array.from({ length: jobs }, () => ({ name: 'noop', data: {} })));
  const addMs = performance.now() - addStart;
  await queue.close();

  const stats = new pg.Client({ connectionString: args.url });
  await stats.connect();
  const before = await databaseStats(stats);

  let first = null;
  let last = null;
  let completed = 0;
  let failed = 0;
  let done;
  const finished = new Promise((resolve) => {
    done = resolve;
  });
  const worker = new Worker(
    QUEUE,
    async () => {
      first ??= performance.now();
    },
    workerOpts(concurrency),
    createPostgresBackend,
  );
  const queries = args['count-queries'] ? countQueries(worker) : null;
  worker.on('completed', () => {
    completed += 1;
    if (completed + failed === jobs) {
      last = performance.now();
      done();
    }
  });
  worker.on('failed', () => {
    failed += 1;
    if (completed + failed === jobs) done();
  });
  await worker.waitUntilReady();
  worker.run();
  await finished;
  await worker.close();

  const after = await databaseStats(stats);
  const { rows } = await stats.query(
    `SELECT count(*) FILTER (WHERE state = 'completed')::int AS completed,
            (max(finished_at_ms) - min(processed_at_ms))::int AS span_ms
       FROM bullmq.job WHERE queue = $1`,
    [QUEUE],
  );
  await stats.end();
  if (failed || rows[0].completed !== jobs) {
    throw new Error(`${failed} jobs failed, ${rows[0].completed} of ${jobs} completed in the database`);
  }
  const seconds = (last - first) / 1000;
  const perJob = Object.fromEntries(STAT_COLUMNS.map((c) => [c, (after[c] - before[c]) / jobs]));
  return {
    jobs,
    concurrency,
    jobs_per_s: jobs / seconds,
    seconds,
    // The same span from the job rows (worker clocks in ms, before the finishing round trip).
    db_span_jobs_per_s: jobs / (rows[0].span_ms / 1000),
    add_bulk_jobs_per_s: jobs / (addMs / 1000),
    per_job: perJob,
    ...(queries && {
      round_trips_per_job: Object.fromEntries(
        Object.entries(queries).map(([command, n]) => [command, n / jobs]),
      ),
    }),
  };
}

async function latency(samples, concurrency) {
  const queue = new Queue(QUEUE, producerOpts, createPostgresBackend);
  await queue.waitUntilReady();
  let started;
  let finished;
  const worker = new Worker(
    QUEUE,
    async () => {
      started(performance.now());
    },
    workerOpts(concurrency),
    createPostgresBackend,
  );
  worker.on('completed', () => finished());
  await worker.waitUntilReady();
  worker.run();
  await sleep(1000); // let the worker go idle, blocked on LISTEN

  const latencies = [];
  for (let i = 0; i < samples; i++) {
    const start = new Promise((resolve) => {
      started = resolve;
    });
    const end = new Promise((resolve) => {
      finished = resolve;
    });
    const t0 = performance.now();
    await queue.add('noop', {});
    latencies.push((await start) - t0);
    await end;
    await sleep(20);
  }
  await worker.close();
  await queue.close();
  return {
    samples,
    concurrency,
    p50_ms: percentile(latencies, 50),
    p95_ms: percentile(latencies, 95),
    max_ms: Math.max(...latencies),
  };
}

const timeout = setTimeout(() => {
  console.error(`bench.mjs: no result after ${TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, TIMEOUT_MS);
timeout.unref();

const concurrency = Number(args.concurrency);
const result =
  args.mode === 'latency'
    ? await latency(Number(args.samples), concurrency)
    : await throughput(Number(args.jobs), concurrency);
const { version } = createRequire(import.meta.url)('bullmq/package.json');
console.log(JSON.stringify({ system: 'bullmq-postgres', bullmq: version, mode: args.mode, ...result }));
