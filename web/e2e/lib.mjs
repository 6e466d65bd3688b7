// Shared helpers for the e2e tests: launching Debian chromium headless, reading canvases,
// building tiny diffusers model files.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

/** Bytes of a safetensors file holding `tensors` = { name: shape } (f32, values 0.01·i). */
export function safetensors(tensors) {
  const header = {};
  let offset = 0;
  for (const [name, shape] of Object.entries(tensors)) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 4;
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8) json += ' ';
  const buf = Buffer.alloc(8 + json.length + offset);
  buf.writeBigUInt64LE(BigInt(json.length), 0);
  buf.write(json, 8, 'utf8');
  const data = new Float32Array(offset / 4).map((_, i) => 0.01 * (i % 100));
  Buffer.from(data.buffer).copy(buf, 8 + json.length);
  return buf;
}

/** A tiny 1-channel 16×16 diffusers UNet2DModel: config.json and safetensors bytes. */
export function tinyModel() {
  const config = {
    _class_name: 'UNet2DModel',
    sample_size: 16,
    in_channels: 1,
    out_channels: 1,
    block_out_channels: [8, 16],
    down_block_types: ['DownBlock2D', 'AttnDownBlock2D'],
    up_block_types: ['AttnUpBlock2D', 'UpBlock2D'],
    layers_per_block: 1,
    norm_num_groups: 4,
  };
  const weights = safetensors({
    'conv_in.weight': [8, 1, 3, 3],
    'conv_in.bias': [8],
    'conv_out.weight': [1, 8, 3, 3],
    'conv_out.bias': [1],
  });
  return { config: Buffer.from(JSON.stringify(config)), weights };
}
