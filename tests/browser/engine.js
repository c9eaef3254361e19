// Starts the real `inference-engine serve` on port 0 with a clean environment and a fresh
// SQLite file, reads its address from the `listening` log line, and stops it.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

export const REPO = path.resolve(import.meta.dirname, '..', '..');

/** The keys the engine accepts: a tenant key without `admin`, and an admin key. */
export const KEYS = {
  user: 'test-key',
  admin: 'admin-test',
};

function defaultBinary() {
  const target = process.env.CARGO_TARGET_DIR ? path.resolve(REPO, process.env.CARGO_TARGET_DIR) : path.join(REPO, 'target');
  return path.join(target, 'debug', 'inference-engine');
}

/**
 * Starts the engine; resolves once it listens and `/ready` answers 200 (warm-up done).
 * Returns `{origin, stop(), logs}`.
 */
export async function startEngine({ binary = process.env.ENGINE_BIN || defaultBinary(), timeoutMs = 60_000 } = {}) {
  if (!existsSync(binary)) {
    throw new Error(`${binary} does not exist: build it with \`cargo build -p inference-engine-cli\` (run.sh does)`);
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'ie-playground-'));
  const env = {
    PATH: process.env.PATH,
    HOME: dir,
    SQLITE_DB_PATH: path.join(dir, 'jobs.db'),
    MODELS_DIR: path.join(REPO, 'models'),
    API_KEYS: `${KEYS.user}:tenant_a:predict,read_models;${KEYS.admin}:ops:admin`,
    LOG_FORMAT: 'json',
    LOG_LEVEL: 'info',
    ENGINE_CONFIG: path.join(REPO, 'engine.toml'),
    // The ONNX Runtime library scripts/install-onnxruntime.sh puts in the checkout.
    ORT_DYLIB_PATH: process.env.ORT_DYLIB_PATH || path.join(REPO, 'onnxruntime', 'libonnxruntime.so'),
  };
  // The working directory is the temp dir, so no `.env` of the repository leaks in.
  const child = spawn(binary, ['serve', '--host', '127.0.0.1', '--port', '0'], {
    cwd: dir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs = [];
  const stderr = [];
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => stderr.push(chunk));
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

  const address = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the engine did not log "listening" within ${timeoutMs} ms:\n${logs.join('\n')}\n${stderr.join('')}`)), timeoutMs);
    const lines = readline.createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      logs.push(line);
      let entry;
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      if (entry.message === 'listening' && entry.address) {
        clearTimeout(timer);
        resolve(entry.address);
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`the engine exited (code ${code}, signal ${signal}) before listening:\n${stderr.join('')}\n${logs.join('\n')}`));
    });
  });
  const origin = `http://${address}`;

  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ready = await fetch(`${origin}/ready`).then((r) => r.status, () => 0);
    if (ready === 200) break;
    if (Date.now() > deadline) throw new Error(`/ready did not answer 200 within ${timeoutMs} ms (last: ${ready})`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  async function stop() {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(killer);
    }
    rmSync(dir, { recursive: true, force: true });
  }

  return { origin, stop, logs, pid: child.pid };
}
