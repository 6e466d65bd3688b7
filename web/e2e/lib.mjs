// Shared helpers for the e2e tests: launching Debian chromium headless, reading canvases, the
// fixture model's files, .npy files.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const BASE = process.env.DDPM_URL ?? 'http://127.0.0.1:8080/';
export const OUT = process.env.E2E_OUT ?? 'target/e2e';
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** Flags every launch gets: no sandbox (root), and no network chatter beyond 127.0.0.1. */
export const BASE_FLAGS = [
  '--no-sandbox',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
/** What gives headless Linux chromium a WebGPU adapter (Dawn on SwiftShader's Vulkan). */
export const WEBGPU_FLAGS = ['--enable-unsafe-webgpu'];

/**
 * Launches chromium with a fresh user-data-dir and opens one page that records console errors
 * and uncaught exceptions in `page.errors`. Returns { context, page, close }.
 */
export async function launch(extraFlags) {
  const dir = mkdtempSync(join(tmpdir(), 'ddpm-e2e-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [...BASE_FLAGS, ...extraFlags],
    viewport: { width: 1360, height: 1000 },
    acceptDownloads: true,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.errors = [];
  page.on('console', (m) => {
    if (m.type() === 'error') page.errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => page.errors.push(`pageerror: ${e.message}`));
  const close = async () => {
    await context.close();
    rmSync(dir, { recursive: true, force: true });
  };
  return { context, page, close };
}

/** Waits until `<body data-{key}>` is one of `values`; returns the value. */
export async function waitBody(page, key, values, timeout = 60_000) {
  const handle = await page.waitForFunction(
    ([k, vs]) => vs.includes(document.body.dataset[k]) && document.body.dataset[k],
    [key, values],
    { timeout },
  );
  return handle.jsonValue();
}

/**
 * Summary of canvas `id`'s pixels: size, a hash, and the spread of luminance (0 = uniform).
 */
export async function canvasStats(page, id) {
  return page.evaluate((id) => {
    const c = document.getElementById(id);
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let h = 2166136261 >>> 0;
    let sum = 0;
    let sq = 0;
    let color = 0;
    for (let i = 0; i < d.length; i += 4) {
      h = Math.imul(h ^ d[i] ^ (d[i + 1] << 8) ^ (d[i + 2] << 16), 16777619) >>> 0;
      const y = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
      sum += y;
      sq += y * y;
      color += Math.abs(d[i] - d[i + 1]) + Math.abs(d[i + 1] - d[i + 2]);
    }
    const n = d.length / 4;
    const mean = sum / n;
    return {
      w: c.width,
      h: c.height,
      hash: h.toString(16),
      std: Math.sqrt(Math.max(0, sq / n - mean * mean)),
      colorfulness: color / n,
    };
  }, id);
}

/** Sets an `<input type=range>` and fires `input`, as a drag would. */
export async function setRange(page, id, value) {
  await page.evaluate(
    ([id, v]) => {
      const el = document.getElementById(id);
      el.value = String(v);
      el.dispatchEvent(new Event('input', { bubbles: true }));
    },
    [id, value],
  );
}

/** Root of the repository (tests run from there; see run.sh). */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * The diffusers test model tests/fixtures/unet_tiny (1×16×16, random weights; the page's
 * bundled placeholder is a copy): `config.json` (with `overrides` applied) and safetensors bytes.
 */
export function fixtureModel(overrides = {}) {
  const dir = join(ROOT, 'tests/fixtures/unet_tiny');
  const config = { ...JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')), ...overrides };
  const weights = readFileSync(join(dir, 'diffusion_pytorch_model.safetensors'));
  return { config: Buffer.from(JSON.stringify(config)), weights };
}

/** Reads a little-endian float32 C-order .npy file: { shape, data: Float32Array }. */
export function readNpy(path) {
  const b = readFileSync(path);
  if (b.toString('latin1', 1, 6) !== 'NUMPY') throw new Error(`${path}: not a .npy file`);
  const headerLen = b[6] === 1 ? b.readUInt16LE(8) : b.readUInt32LE(8);
  const start = (b[6] === 1 ? 10 : 12) + headerLen;
  const header = b.toString('latin1', b[6] === 1 ? 10 : 12, start);
  if (!/'descr': '<f4'/.test(header) || /'fortran_order': True/.test(header)) {
    throw new Error(`${path}: expected little-endian f32 C order, got ${header}`);
  }
  const shape = header.match(/'shape': \(([^)]*)\)/)[1].split(',').filter((s) => s.trim()).map(Number);
  const data = new Float32Array(b.buffer.slice(b.byteOffset + start, b.byteOffset + b.length));
  return { shape, data };
}
