// End-to-end tests of the browser demo in headless Debian chromium (node --test; see run.sh).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BASE, OUT, WEBGPU_FLAGS, canvasStats, launch, setRange, tinyModel, waitBody } from './lib.mjs';

mkdirSync(OUT, { recursive: true });

/** Opens the page with WebGPU and waits for the GPU (failing with the page's message if none). */
async function openWithGpu(url = BASE) {
  const b = await launch(WEBGPU_FLAGS);
  await b.page.goto(url);
  const gpu = await waitBody(b.page, 'gpu', ['ready', 'unavailable']);
  if (gpu !== 'ready') {
    const msg = await b.page.textContent('#gpu-error');
    await b.close();
    assert.fail(`WebGPU did not start: ${msg}`);
  }
  return b;
}

async function generate(page, { n, sampler = 'ddim', steps = 20 }) {
  await page.fill('#n-samples', String(n));
  await page.selectOption('#sampler', sampler);
  if (sampler === 'ddim') await page.fill('#ddim-steps', String(steps));
  await page.click('#generate');
  await waitBody(page, 'run', ['running', 'done', 'error']);
}

test('generate, scrub, export, forward view (WebGPU)', async () => {
  const { page, close } = await openWithGpu();
  try {
    assert.match(await page.textContent('#gpu-status'), /\S/);
    assert.match(await page.textContent('#gpu-info'), /maxStorageBufferBindingSize/);
    assert.match(await page.textContent('#schedule-info'), /T = 1000/);
    const blank = await canvasStats(page, 'canvas-xt');

    // A short DDIM run of 4 samples: the canvas changes and ends non-uniform.
    await generate(page, { n: 4, sampler: 'ddim', steps: 20 });
    assert.equal(await waitBody(page, 'run', ['done', 'error']), 'done', await page.textContent('#run-error'));
    const final = await canvasStats(page, 'canvas-xt');
    assert.notEqual(final.hash, blank.hash, 'x_t canvas did not change');
    assert.equal(final.w, 2 * 33 + 1, 'a 2×2 grid of 32×32 images with 1 px gaps');
    assert.ok(final.std > 10, `final grid looks uniform (luminance std ${final.std})`);
    assert.equal(await page.textContent('#stat-steps'), '20 / 20');
    assert.match(await page.textContent('#view-t-label'), /t = 0/);
    const x0final = await canvasStats(page, 'canvas-x0');
    assert.ok(x0final.std > 10);

    // Scrub to t = T: a different x_t (pure noise), label follows; ← → step one frame.
    assert.equal(await page.getAttribute('#view-t', 'max'), '20');
    await setRange(page, 'view-t', 0);
    assert.match(await page.textContent('#view-t-label'), /^t = 9\d\d$/);
    const noisy = await canvasStats(page, 'canvas-xt');
    assert.notEqual(noisy.hash, final.hash, 'scrubbing did not change x_t');
    assert.ok(noisy.std > 10);
    await page.click('h1'); // focus outside the form controls
    await page.keyboard.press('ArrowRight');
    assert.equal(await page.inputValue('#view-t'), '1');
    assert.notEqual((await canvasStats(page, 'canvas-xt')).hash, noisy.hash);
    await page.keyboard.press('ArrowLeft');
    assert.equal(await page.inputValue('#view-t'), '0');

    // Export PNG of the grid shown.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-png')]);
    assert.match(download.suggestedFilename(), /^ddpm-seed0-t\d+\.png$/);
    const png = readFileSync(await download.path());
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

    // Forward process: moving t changes x_t; the stats follow.
    await setRange(page, 'fwd-t', 10);
    await page.waitForFunction(() => document.getElementById('fwd-t-label').textContent === 't = 10');
    const early = await canvasStats(page, 'fwd-xt');
    await setRange(page, 'fwd-t', 900);
    await page.waitForFunction(() => document.getElementById('fwd-t-label').textContent === 't = 900');
    const late = await canvasStats(page, 'fwd-xt');
    assert.notEqual(early.hash, late.hash);
    assert.match(await page.textContent('#fwd-stats'), /ᾱ_t = 0\.0\d+/);
    // Generated samples are offered as x_0.
    assert.ok((await page.locator('#fwd-image option').allTextContents()).includes('Generated #1'));

    // A long DDPM run draws as it goes, and Stop stops it.
    await generate(page, { n: 16, sampler: 'ddpm' });
    await page.waitForFunction(() => parseInt(document.getElementById('stat-steps').textContent) > 0);
    const a = await canvasStats(page, 'canvas-xt');
    await page.waitForFunction(
      ([s]) => parseInt(document.getElementById('stat-steps').textContent) > s || document.body.dataset.run !== 'running',
      [parseInt(await page.textContent('#stat-steps'))],
    );
    await page.evaluate(() => new Promise(requestAnimationFrame));
    const b = await canvasStats(page, 'canvas-xt');
    assert.notEqual(a.hash, b.hash, 'x_t canvas did not update during the run');
    await page.click('#stop');
    const state = await waitBody(page, 'run', ['stopped', 'done', 'error']);
    assert.equal(state, 'stopped', await page.textContent('#run-error'));
    const done = parseInt(await page.textContent('#stat-steps'));
    assert.ok(done > 0 && done < 1000, `stopped after ${done} steps`);
    assert.equal(await page.isDisabled('#view-t'), false, 'slider usable after Stop');

    await setRange(page, 'view-t', 0);
    await page.selectOption('#sampler', 'ddim');
    await generate(page, { n: 8, sampler: 'ddim', steps: 25 });
    await waitBody(page, 'run', ['done', 'error']);
    await setRange(page, 'fwd-t', 300);
    await page.waitForFunction(() => document.getElementById('fwd-t-label').textContent === 't = 300');
    const shot = resolve(join(OUT, 'demo.png'));
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);

    assert.deepEqual(page.errors, []);
  } finally {
    await close();
  }
});

test('device loss is reported and the next Generate recovers', async () => {
  const { page, close } = await openWithGpu();
  try {
    await generate(page, { n: 2, steps: 5 });
    assert.equal(await waitBody(page, 'run', ['done', 'error']), 'done');
    await page.evaluate(() => window.ddpm.debug_lose_device());
    await waitBody(page, 'gpu', ['lost']);
    assert.match(await page.textContent('#gpu-error'), /device was lost/);
    assert.equal(await page.isDisabled('#generate'), false);
    await generate(page, { n: 2, steps: 5 });
    assert.equal(await waitBody(page, 'run', ['done', 'error']), 'done', await page.textContent('#run-error'));
    assert.equal(await waitBody(page, 'gpu', ['ready']), 'ready');
    assert.equal(await page.isHidden('#gpu-error'), true);
    if (page.errors.length) console.log('console errors after the deliberate device loss:', page.errors);
    assert.deepEqual(page.errors.filter((e) => !/destroy|lost/i.test(e)), []);
  } finally {
    await close();
  }
});

test('load your own model: files, errors, URL with progress', async () => {
  const { config, weights } = tinyModel();
  const { page, close } = await openWithGpu();
  try {
    // Missing weights: a clear error in the page.
    await page.setInputFiles('#model-files', [{ name: 'config.json', mimeType: 'application/json', buffer: config }]);
    await waitBody(page, 'model', ['error']);
    assert.match(await page.textContent('#model-error'), /no \.safetensors/);

    // Corrupt weights.
    await page.setInputFiles('#model-files', [
      { name: 'config.json', mimeType: 'application/json', buffer: config },
      { name: 'diffusion_pytorch_model.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from('nonsense') },
    ]);
    await page.waitForFunction(() => /safetensors/.test(document.getElementById('model-error').textContent));
    assert.equal(await page.evaluate(() => document.body.dataset.model), 'error');

    // A valid 1×16×16 model: info shown, and Generate draws 16×16 grayscale images.
    await page.setInputFiles('#model-files', [
      { name: 'config.json', mimeType: 'application/json', buffer: config },
      { name: 'diffusion_pytorch_model.safetensors', mimeType: 'application/octet-stream', buffer: weights },
    ]);
    await waitBody(page, 'model', ['ready']);
    assert.equal(await page.isHidden('#model-error'), true);
    assert.match(await page.textContent('#model-info'), /1×16×16/);
    await generate(page, { n: 4, steps: 10 });
    assert.equal(await waitBody(page, 'run', ['done', 'error']), 'done', await page.textContent('#run-error'));
    const grid = await canvasStats(page, 'canvas-xt');
    assert.equal(grid.w, 2 * 17 + 1);
    assert.equal(grid.colorfulness, 0, 'one channel draws as grayscale');
    assert.ok(grid.std > 10);

    // After a device loss the model is rebuilt on the new device.
    await page.evaluate(() => window.ddpm.debug_lose_device());
    await waitBody(page, 'gpu', ['lost']);
    await generate(page, { n: 9, steps: 10 });
    assert.equal(await waitBody(page, 'run', ['done', 'error']), 'done', await page.textContent('#run-error'));
    assert.equal((await canvasStats(page, 'canvas-xt')).w, 3 * 17 + 1);
    assert.equal(await page.evaluate(() => document.body.dataset.model), 'ready');
    assert.deepEqual(page.errors.filter((e) => !/destroy|lost/i.test(e)), []);
  } finally {
    await close();
  }

  // ?model=URL/ downloads config + weights with a progress bar.
  const b = await launch(WEBGPU_FLAGS);
  try {
    let served = 0;
    await b.page.route('**/tiny/*', async (route) => {
      const url = route.request().url();
      served++;
      if (url.endsWith('/config.json')) return route.fulfill({ body: config, contentType: 'application/json' });
      if (url.endsWith('/diffusion_pytorch_model.safetensors')) {
        return route.fulfill({ body: weights, headers: { 'content-length': String(weights.length) } });
      }
      return route.fulfill({ status: 404 });
    });
    await b.page.goto(`${BASE}?model=tiny/`);
    assert.equal(await waitBody(b.page, 'model', ['ready', 'error']), 'ready', await b.page.textContent('#model-error'));
    assert.equal(served, 2);
    assert.match(await b.page.textContent('#model-info'), /tiny\//);
    assert.equal(await b.page.isHidden('#model-progress'), true, 'progress bar hidden when done');
    assert.deepEqual(b.page.errors, []);
  } finally {
    await b.close();
  }
});

test('no WebGPU adapter: the page says so', async () => {
  // Without --enable-unsafe-webgpu, headless Linux chromium has navigator.gpu but no adapter.
  const { page, close } = await launch([]);
  try {
    await page.goto(BASE);
    assert.equal(await waitBody(page, 'gpu', ['ready', 'unavailable']), 'unavailable');
    const msg = await page.textContent('#gpu-error');
    assert.match(msg, /^WebGPU unavailable: /);
    assert.equal(await page.isVisible('#gpu-error'), true);
    assert.equal(await page.isDisabled('#generate'), true);
    assert.match(await page.textContent('#gpu-status'), /WebGPU unavailable/);
    // The forward view still works (CPU fallback).
    await setRange(page, 'fwd-t', 500);
    await page.waitForFunction(() => document.getElementById('fwd-t-label').textContent === 't = 500');
    assert.ok((await canvasStats(page, 'fwd-xt')).std > 5);
    await page.screenshot({ path: resolve(join(OUT, 'no-webgpu.png')) });
    assert.deepEqual(page.errors, []);
  } finally {
    await close();
  }
});

test('no navigator.gpu at all: the page says so', async () => {
  const { context, page, close } = await launch(WEBGPU_FLAGS);
  try {
    await context.addInitScript(() => {
      delete Navigator.prototype.gpu;
    });
    await page.goto(BASE);
    assert.equal(await waitBody(page, 'gpu', ['ready', 'unavailable']), 'unavailable');
    assert.match(await page.textContent('#gpu-error'), /WebGPU unavailable: .*navigator\.gpu is missing/);
    assert.deepEqual(page.errors, []);
  } finally {
    await close();
  }
});
