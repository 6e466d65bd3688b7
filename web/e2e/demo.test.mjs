// End-to-end tests of the browser demo in headless Debian chromium (node --test; see run.sh).
// The page's default model is the class-conditional MNIST model in assets/mnist-cond (1×28×28);
// the unconditional one (assets/mnist) comes through ?model=, as it does for most tests
// and for the smaller untrained placeholder assets/placeholder (= the test fixture tests/fixtures/unet_tiny,
// 1×16×16) through ?model=. WebGPU runs on Chromium's SwiftShader, which is slow (a few steps/s),
// so runs are short.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BASE, OUT, WEBGPU_FLAGS, canvasStats, fixtureModel, launch, readNpy, setRange, waitBody } from './lib.mjs';

mkdirSync(OUT, { recursive: true });

/** `ddpm sample --model assets/placeholder --n 4 --seed 7 --sampler ddim --steps 10 --npy …`. */
const NATIVE_NPY = new URL('./fixtures/placeholder-ddim10-seed7.npy', import.meta.url).pathname;
/** `ddpm sample --model assets/mnist-cond --n 4 --seed 7 --sampler ddim --steps 10 --npy …`
 * (classes 0–3, the model's guidance w = 1.25). */
const MNIST_COND_NPY = new URL('./fixtures/mnist-cond-ddim10-seed7.npy', import.meta.url).pathname;
/** `ddpm sample --n 4 --seed 7 --sampler ddim --steps 20 --npy …` (the bundled MNIST model). */
const MNIST_NPY = new URL('./fixtures/mnist-ddim20-seed7.npy', import.meta.url).pathname;
/** `ddpm loss --timesteps 10 --draws 1 --seed 0 --csv …` (the bundled MNIST model and examples). */
const MNIST_LOSS_CSV = new URL('./fixtures/mnist-loss-t10.csv', import.meta.url).pathname;
/** Largest |page − native| allowed: SwiftShader vs lavapipe float rounding through the U-Net. */
const NATIVE_TOL = 1e-3;
/** The page with the unconditional MNIST model instead of the default. */
const MNIST = `${BASE}?model=assets/mnist/`;
/** The page with the small placeholder model instead of the default. */
const PLACEHOLDER = `${BASE}?model=assets/placeholder/`;

/** Opens the page with WebGPU and waits for the GPU and the default model. */
async function openWithGpu(url = BASE) {
  const b = await launch(WEBGPU_FLAGS);
  const t0 = Date.now();
  await b.page.goto(url);
  const gpu = await waitBody(b.page, 'gpu', ['ready', 'unavailable']);
  if (gpu !== 'ready') {
    const msg = await b.page.textContent('#gpu-error');
    await b.close();
    assert.fail(`WebGPU did not start: ${msg}`);
  }
  b.loadMs = Date.now() - t0;
  b.t0 = t0;
  return b;
}

async function generate(page, { n, sampler = 'ddim', steps = 10, seed }) {
  await page.fill('#n-samples', String(n));
  await page.selectOption('#sampler', sampler);
  if (sampler === 'ddim') await page.fill('#ddim-steps', String(steps));
  if (seed !== undefined) await page.fill('#seed', String(seed));
  await page.click('#generate'); // waits until enabled (GPU and model ready)
  await waitBody(page, 'run', ['running', 'done', 'error']);
}

/** Largest |page − native| over two equally long arrays. */
function maxAbsDiff(mine, native) {
  assert.equal(mine.length, native.length);
  let maxDiff = 0;
  for (let i = 0; i < mine.length; i++) maxDiff = Math.max(maxDiff, Math.abs(mine[i] - native[i]));
  return maxDiff;
}

/** MNIST-like: mostly dark background, some bright strokes. */
function assertMnistLike(x) {
  const background = x.filter((v) => v < -0.8).length / x.length;
  const ink = x.filter((v) => v > 0.5).length / x.length;
  assert.ok(background > 0.6 && background < 0.95 && ink > 0.03 && ink < 0.3, `not MNIST-like: ${background} background, ${ink} ink`);
}

test('the default model is the class-conditional MNIST model: it draws what the CLI draws', async () => {
  const b = await openWithGpu();
  const { page, close } = b;
  try {
    assert.equal(await waitBody(page, 'model', ['ready', 'error']), 'ready', await page.textContent('#model-error'));
    console.log(`page load: WebGPU ready ${b.loadMs} ms, conditional MNIST ready ${Date.now() - b.t0} ms after navigation`);
    assert.match(await page.textContent('#model-info'), /assets\/mnist-cond\//);
    assert.equal(await page.inputValue('#model-menu'), 'assets/mnist-cond/');
    assert.equal(await page.isVisible('#class-options'), true);
    assert.equal(await page.inputValue('#class'), 'each');
    assert.match(await page.textContent('#guidance-value'), /w = 1\.25/);
    assert.equal(await page.isHidden('#model-note'), true, 'the trained model needs no caveat');

    // Guided: 8 images per forward, so SwiftShader takes ~5 s a step.
    await generate(page, { n: 4, sampler: 'ddim', steps: 10, seed: 7 });
    assert.equal(await waitBody(page, 'run', ['done', 'error'], 180_000), 'done', await page.textContent('#run-error'));
    console.log(`conditional MNIST DDIM 10 steps, N = 4 (guided: 8 per forward): ${await page.textContent('#stat-rate')} steps/s`);
    const mine = await page.evaluate(() => Array.from(window.ddpm.debug_last_samples()));
    const native = readNpy(MNIST_COND_NPY);
    assert.deepEqual(await page.evaluate(() => Array.from(window.ddpm.debug_last_shape())), native.shape);
    const diff = maxAbsDiff(mine, native.data);
    console.log(`page vs native ddpm sample (conditional MNIST): max |Δ| = ${diff.toExponential(2)}`);
    assert.ok(diff < NATIVE_TOL, `page samples differ from the native CLI's by ${diff}`);
    assertMnistLike(mine);
    await page.screenshot({ path: resolve(join(OUT, 'mnist-cond.png')), fullPage: true });
    assert.deepEqual(page.errors, []);
  } finally {
    await close();
  }
});

test('the unconditional MNIST model draws what the CLI draws', async () => {
  const b = await openWithGpu(MNIST);
  const { page, close } = b;
  try {
    assert.equal(await waitBody(page, 'model', ['ready', 'error']), 'ready', await page.textContent('#model-error'));
    console.log(`page load: WebGPU ready ${b.loadMs} ms, MNIST model ready ${Date.now() - b.t0} ms after navigation`);
    assert.match(await page.textContent('#model-info'), /assets\/mnist\//);
    assert.match(await page.textContent('#model-status'), /1×28×28/);
    assert.equal(await page.isHidden('#model-note'), true, 'the trained model needs no caveat');

    await generate(page, { n: 4, sampler: 'ddim', steps: 20, seed: 7 });
    assert.equal(await waitBody(page, 'run', ['done', 'error']), 'done', await page.textContent('#run-error'));
    console.log(`MNIST DDIM 20 steps, N = 4: ${await page.textContent('#stat-rate')} steps/s`);
    const grid = await canvasStats(page, 'canvas-xt');
    assert.equal(grid.w, 2 * 29 + 1, 'a 2×2 grid of 28×28 images with 1 px gaps');
    const shape = await page.evaluate(() => Array.from(window.ddpm.debug_last_shape()));
    const mine = await page.evaluate(() => Array.from(window.ddpm.debug_last_samples()));
    const native = readNpy(MNIST_NPY);
    assert.deepEqual(shape, native.shape);
    const diff = maxAbsDiff(mine, native.data);
    console.log(`page vs native ddpm sample (MNIST): max |Δ| = ${diff.toExponential(2)} over ${mine.length} values`);
    assert.ok(diff < NATIVE_TOL, `page samples differ from the native CLI's by ${diff}`);
    assertMnistLike(mine);
    await page.screenshot({ path: resolve(join(OUT, 'mnist.png')), fullPage: true });
    assert.deepEqual(page.errors, []);
  } finally {
    await close();
  }
});

/** ᾱ_t of DDPM's linear schedule (β 1e-4 → 0.02, T = 1000), t = 0..999. */
function linearAlphaBar() {
  const abar = [];
  let prod = 1;
  for (let i = 0; i < 1000; i++) {
    prod *= 1 - (1e-4 + (0.02 - 1e-4) * (i / 999));
    abar.push(prod);
  }
  return abar;
}

test('the viewer explains each step: ε̂ beside x_t and x̂0, play and step, GIF and .npy downloads', async () => {
  const { page, close } = await openWithGpu(MNIST);
  try {
    assert.equal(await waitBody(page, 'model', ['ready', 'error']), 'ready', await page.textContent('#model-error'));
    assert.equal(await page.isDisabled('#play'), true, 'nothing to play before a run');
    await generate(page, { n: 4, sampler: 'ddim', steps: 20, seed: 7 });
    assert.equal(await waitBody(page, 'run', ['done', 'error']), 'done', await page.textContent('#run-error'));

    // The ε̂ canvas is the ε̂ that made the x̂0 shown: x̂0 = (x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t.
    const abar = linearAlphaBar();
    await setRange(page, 'view-t', 14);
    assert.equal(await page.textContent('#view-t-label'), 't = 250');
    const eps = await canvasStats(page, 'canvas-eps');
    assert.equal(eps.w, 2 * 29 + 1);
    assert.ok(eps.std > 10, `ε̂ looks uniform (${eps.std})`);
    const frame = await page.evaluate(() => Array.from(window.ddpm.debug_frame(14)));
    const n = frame.length / 3;
    assert.equal(n, 4 * 28 * 28);
    const [a, s] = [Math.sqrt(abar[250]), Math.sqrt(1 - abar[250])];
    let worst = 0;
    let checked = 0;
    let epsSq = 0;
    for (let i = 0; i < n; i++) {
      const [x, x0, e] = [frame[i], frame[n + i], frame[2 * n + i]];
      epsSq += e * e;
      if (Math.abs(x0) > 0.98 || Math.abs(x) > 0.98) continue; // clipped to [−1, 1] (x̂0 by the sampler, x_t by the display)
      worst = Math.max(worst, Math.abs(x0 - (x - s * e) / a));
      checked++;
    }
    console.log(`ε̂ view at t = 250: x̂0 vs (x_t − √(1−ᾱ)ε̂)/√ᾱ max |Δ| = ${worst.toFixed(4)} over ${checked} values, rms ε̂ = ${Math.sqrt(epsSq / n).toFixed(3)}`);
    assert.ok(checked > n / 10 && worst < 0.03, `x̂0 does not follow from x_t and ε̂ (max |Δ| ${worst})`);
    const rms = Math.sqrt(epsSq / n);
    assert.ok(rms > 0.5 && rms < 1.5, `ε̂ should have about unit variance, rms ${rms}`);

    // Play from x_T to the sample; keys: Space, Home, End.
    await page.selectOption('#play-speed', '60');
    await page.click('#replay');
    await waitBody(page, 'play', ['playing']);
    await waitBody(page, 'play', ['paused'], 30_000);
    assert.equal(await page.inputValue('#view-t'), '20');
    assert.equal(await page.textContent('#view-t-label'), 'x₀ (sample)');
    await page.click('h1');
    await page.keyboard.press('Home');
    assert.equal(await page.inputValue('#view-t'), '0');
    assert.equal(await page.textContent('#view-t-label'), 't = 950');
    await page.selectOption('#play-speed', '5');
    await page.click('h1');
    await page.keyboard.press(' ');
    await waitBody(page, 'play', ['playing']);
    await page.waitForFunction(() => document.getElementById('view-t').value !== '0');
    await page.keyboard.press(' ');
    assert.equal(await waitBody(page, 'play', ['paused']), 'paused');
    const stopped = await page.inputValue('#view-t');
    await page.waitForTimeout(500);
    assert.equal(await page.inputValue('#view-t'), stopped, 'paused playback does not move');
    await page.click('#step-fwd');
    assert.equal(Number(await page.inputValue('#view-t')), Number(stopped) + 1);
    await page.click('#step-back');
    assert.equal(await page.inputValue('#view-t'), stopped);
    await page.keyboard.press('End');
    assert.equal(await page.inputValue('#view-t'), '20');

    // Downloads: the trajectory GIF (one frame per kept step plus the held sample) and the
    // samples as .npy, equal to what the page computed.
    const [gif] = await Promise.all([page.waitForEvent('download'), page.click('#export-gif')]);
    assert.equal(gif.suggestedFilename(), 'ddpm-seed7-trajectory.gif');
    const g = readFileSync(await gif.path());
    assert.equal(g.toString('latin1', 0, 6), 'GIF89a');
    assert.deepEqual([g.readUInt16LE(6), g.readUInt16LE(8)], [2 * 28 + 3 * 2, 2 * 28 + 3 * 2]);
    // WebM where the browser records video (headless Chromium does): an EBML (Matroska) file.
    assert.equal(await page.isVisible('#export-webm'), true, 'Chromium has MediaRecorder');
    const [webm] = await Promise.all([page.waitForEvent('download', { timeout: 60_000 }), page.click('#export-webm')]);
    assert.equal(webm.suggestedFilename(), 'ddpm-seed7-trajectory.webm');
    const v = readFileSync(await webm.path());
    assert.deepEqual([...v.subarray(0, 4)], [0x1a, 0x45, 0xdf, 0xa3], 'not a WebM file');
    assert.ok(v.length > 1000, `a ${v.length}-byte video`);
    const [npy] = await Promise.all([page.waitForEvent('download'), page.click('#export-npy')]);
    assert.equal(npy.suggestedFilename(), 'ddpm-seed7.npy');
    const saved = readNpy(await npy.path());
    const mine = await page.evaluate(() => Array.from(window.ddpm.debug_last_samples()));
    assert.deepEqual(saved.shape, [4, 1, 28, 28]);
    assert.equal(maxAbsDiff(mine, saved.data), 0);
    await page.screenshot({ path: resolve(join(OUT, 'explain.png')), fullPage: true });
    assert.deepEqual(page.errors, []);
  } finally {
    await close();
  }
});

test('noise it, then denoise it: from a small t the digit comes back, from a large t a new one', async () => {
  const { page, close } = await openWithGpu(MNIST);
  try {
    assert.equal(await waitBody(page, 'model', ['ready', 'error']), 'ready', await page.textContent('#model-error'));
    await page.selectOption('#fwd-image', { label: 'MNIST digit 3' });
    const recon = async (t, sampler) => {
      await setRange(page, 'fwd-t', t);
      await page.selectOption('#sampler', sampler);
      if (sampler === 'ddim') await page.fill('#ddim-steps', '50');
      await page.click('#fwd-denoise');
      await waitBody(page, 'run', ['running', 'done', 'error']);
      assert.equal(await waitBody(page, 'run', ['done', 'error'], 120_000), 'done', await page.textContent('#run-error'));
      assert.equal(await page.isHidden('#fwd-recon-view'), false);
      return Number(await page.getAttribute('#fwd-recon-stats', 'data-mse'));
    };
    const low = await recon(50, 'ddpm');
    assert.match(await page.textContent('#fwd-recon-stats'), /^from t = 50: MSE/);
    // The viewer holds that run: 51 DDPM steps from t = 50.
    assert.equal(await page.getAttribute('#view-t', 'max'), '51');
    await setRange(page, 'view-t', 0);
    assert.equal(await page.textContent('#view-t-label'), 't = 50');
    assert.deepEqual(await page.evaluate(() => Array.from(window.ddpm.debug_last_shape())), [1, 1, 28, 28]);
    const high = await recon(990, 'ddim');
    assert.match(await page.textContent('#fwd-recon-stats'), /^from t = 980: MSE/, 'DDIM 50 keeps its spacing');
    console.log(`denoised MNIST digit 3: MSE ${low.toFixed(4)} from t = 50 (DDPM), ${high.toFixed(4)} from t = 980 (DDIM 50)`);
    assert.ok(low < 0.03, `from t = 50 the digit should come back (MSE ${low})`);
    assert.ok(high > 5 * low, `from t = 980 the image should be a new one (MSE ${high} vs ${low})`);
    assert.ok((await canvasStats(page, 'fwd-diff')).std > 1);

    // A drawing made with the mouse is denoised the same way.
    const blank = await canvasStats(page, 'draw-pad');
    assert.equal(blank.w, 28, 'the pad has the model sample size');
    const box = await page.locator('#draw-pad').boundingBox();
    await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.2);
    await page.mouse.down();
    for (let k = 1; k <= 12; k++) await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * (0.2 + 0.05 * k));
    await page.mouse.up();
    const drawn = await canvasStats(page, 'draw-pad');
    assert.ok(drawn.std > 20 && drawn.hash !== blank.hash, `the stroke did not paint (${drawn.std})`);
    await page.click('#draw-use');
    assert.equal(await page.$eval('#fwd-image', (s) => s.options[s.selectedIndex].text), 'Your drawing');
    await page.waitForFunction(() => document.getElementById('fwd-x0').width === 30);
    const mine = await recon(50, 'ddpm');
    console.log(`denoised drawing: MSE ${mine.toFixed(4)} from t = 50`);
    assert.ok(mine < 0.05, `from t = 50 the drawing should come back (MSE ${mine})`);
    await page.screenshot({ path: resolve(join(OUT, 'denoise.png')), fullPage: true });
    assert.deepEqual(page.errors, []);
  } finally {
    await close();
  }
});

test('loss per timestep: the page measures the curve ddpm loss prints', async () => {
  const { page, close } = await openWithGpu(MNIST);
  try {
    assert.equal(await waitBody(page, 'model', ['ready', 'error']), 'ready', await page.textContent('#model-error'));
    await page.click('#loss-run');
    assert.equal(await waitBody(page, 'loss', ['done', 'error'], 120_000), 'done', await page.textContent('#loss-stats'));
    const flat = await page.evaluate(() => Array.from(window.ddpm.debug_loss_curve()));
    const native = readFileSync(MNIST_LOSS_CSV, 'utf8').trim().split('\n').slice(1).map((l) => l.split(',').map(Number));
    assert.equal(flat.length, 2 * native.length);
    let worst = 0;
    native.forEach(([t, l], i) => {
      assert.equal(flat[2 * i], t);
      worst = Math.max(worst, Math.abs(flat[2 * i + 1] - l) / l);
    });
    console.log(`loss per t, page vs ddpm loss: max relative |Δ| = ${worst.toExponential(2)} over ${native.length} timesteps`);
    assert.ok(worst < 1e-3, `the page's curve differs from the CLI's by ${worst}`);
    assert.match(await page.textContent('#loss-stats'), /highest 0\.0\d+ at t = 50/);
    assert.equal(await page.isHidden('#loss-view'), false);
    assert.deepEqual(page.errors, []);
  } finally {
    await close();
  }
});

test('compare mode: a second sampler from the same x_T, lined up by t, with their difference', async () => {
  const { page, close } = await openWithGpu(PLACEHOLDER);
  try {
    assert.equal(await waitBody(page, 'model', ['ready', 'error']), 'ready', await page.textContent('#model-error'));
    await page.check('#compare');
    await page.selectOption('#compare-with', 'ddim-1');
    await generate(page, { n: 2, sampler: 'ddim', steps: 10, seed: 5 });
    assert.equal(await waitBody(page, 'run', ['done', 'error'], 180_000), 'done', await page.textContent('#run-error'));
    assert.equal(await page.isHidden('#compare-view'), false);
    const first = await page.evaluate(() => [Array.from(window.ddpm.debug_frame(0)), Array.from(window.ddpm.debug_compare_frame(0))]);
    const n = first[0].length / 3;
    assert.equal(n, 2 * 16 * 16);
    assert.deepEqual(first[0].slice(0, n), first[1].slice(0, n), 'both runs start from the same x_T');
    // DDIM 10 from t = 900; the second run (DDIM 50) shown at the same t.
    await setRange(page, 'view-t', 4);
    assert.equal(await page.textContent('#view-t-label'), 't = 500');
    assert.equal(await page.textContent('#cmp-label'), 'x_t′ at t = 500');
    await setRange(page, 'view-t', 10);
    assert.equal(await page.textContent('#cmp-label'), 'x_t′ at x₀ (sample)');
    const last = await page.evaluate(() => [Array.from(window.ddpm.debug_frame(10)), Array.from(window.ddpm.debug_compare_frame(50))]);
    assert.equal(last[1].length, 3 * n, 'the second run kept its 51 frames');
    assert.ok(maxAbsDiff(last[0].slice(0, n), last[1].slice(0, n)) > 0.1, 'η = 1 ends elsewhere than η = 0');
    assert.ok((await canvasStats(page, 'cmp-diff')).std > 1);
    await page.screenshot({ path: resolve(join(OUT, 'compare.png')), fullPage: true });
    // Unchecked, the next Generate runs alone.
    await page.uncheck('#compare');
    await generate(page, { n: 2, sampler: 'ddim', steps: 10, seed: 5 });
    assert.equal(await waitBody(page, 'run', ['done', 'error']), 'done', await page.textContent('#run-error'));
    assert.equal(await page.isHidden('#compare-view'), true);
    assert.deepEqual(await page.evaluate(() => Array.from(window.ddpm.debug_compare_frame(0))), []);
    assert.deepEqual(page.errors, []);
  } finally {
    await close();
  }
});

test('the shipped-models menu switches models; the forward view shows the model\'s own dataset', async () => {
  const { page, close } = await openWithGpu();
  try {
    assert.equal(await waitBody(page, 'model', ['ready', 'error']), 'ready', await page.textContent('#model-error'));
    assert.equal(await page.inputValue('#model-menu'), 'assets/mnist-cond/');
    const digits = await page.locator('#fwd-image option').allTextContents();
    assert.ok(digits.includes('MNIST digit 3'), digits.join(', '));
    const condId = await page.textContent('#model-info');
    await page.selectOption('#model-menu', 'assets/placeholder/');
    await page.waitForFunction(() => /1×16×16/.test(document.getElementById('model-status').textContent));
    assert.match(await page.textContent('#model-info'), /assets\/placeholder\//);
    assert.equal(await page.isVisible('#class-options'), false, 'an unconditional model has no class picker');
    await page.selectOption('#model-menu', 'assets/mnist/');
    await page.waitForFunction(() => /assets\/mnist\//.test(document.getElementById('model-info').textContent));
    assert.match(await page.textContent('#model-status'), /1×28×28/);
    assert.equal(await page.isVisible('#class-options'), false);
    // The shipped Fashion-MNIST model: a picker of garment names, Fashion-MNIST examples.
    await page.selectOption('#model-menu', 'assets/fashion-cond/');
    await page.waitForFunction(() => /assets\/fashion-cond\//.test(document.getElementById('model-info').textContent));
    assert.equal(await page.isVisible('#class-options'), true);
    const kinds = await page.locator('#class option').allTextContents();
    assert.deepEqual(kinds.slice(0, 3), ['One of each', 'T-shirt/top', 'Trouser'], kinds.join(', '));
    const garments = await page.locator('#fwd-image option').allTextContents();
    assert.ok(garments.includes('Fashion-MNIST: Trouser'), garments.join(', '));
    await page.selectOption('#model-menu', 'assets/mnist-cond/');
    await page.waitForFunction(() => /assets\/mnist-cond\//.test(document.getElementById('model-info').textContent));
    assert.equal(await page.textContent('#model-info'), condId);
    assert.equal(await page.isVisible('#class-options'), true);

    // A model trained on Fashion-MNIST (config key ddpm_dataset) gets Fashion-MNIST examples,
    // and the menu shows "your own model".
    const fashion = fixtureModel({ ddpm_dataset: 'fashion' });
    await page.setInputFiles('#model-files', [
      { name: 'config.json', mimeType: 'application/json', buffer: fashion.config },
      { name: 'diffusion_pytorch_model.safetensors', mimeType: 'application/octet-stream', buffer: fashion.weights },
    ]);
    await page.waitForFunction(() => /1×16×16/.test(document.getElementById('model-status').textContent));
    assert.equal(await page.inputValue('#model-menu'), '');
    const clothes = await page.locator('#fwd-image option').allTextContents();
    assert.ok(clothes.includes('Fashion-MNIST: Trouser') && clothes.length === 10, clothes.join(', '));
    assert.ok((await canvasStats(page, 'fwd-x0')).std > 10);
    // Its 28×28 examples do not fit the 16×16 model: denoising says so.
    await setRange(page, 'fwd-t', 50);
    await page.click('#fwd-denoise');
    assert.equal(await waitBody(page, 'run', ['done', 'error']), 'error');
    assert.match(await page.textContent('#run-error'), /This image is 1×28×28, the model draws 1×16×16/);
    assert.deepEqual(page.errors, []);
  } finally {
    await close();
  }
});

test('the phone layout: every view fits a 390 px wide screen', async () => {
  const { page, close } = await openWithGpu(PLACEHOLDER);
  try {
    await page.setViewportSize({ width: 390, height: 844 });
    assert.equal(await waitBody(page, 'model', ['ready', 'error']), 'ready', await page.textContent('#model-error'));
    await page.check('#compare');
    await generate(page, { n: 4, sampler: 'ddim', steps: 5, seed: 1 });
    assert.equal(await waitBody(page, 'run', ['done', 'error'], 120_000), 'done', await page.textContent('#run-error'));
    await page.click('#fwd-denoise');
    assert.equal(await waitBody(page, 'run', ['done', 'error'], 120_000), 'error', 'the 28×28 digits do not fit the 16×16 model');
    const wide = await page.evaluate(() => {
      const w = document.documentElement.clientWidth;
      return [...document.querySelectorAll('body *')]
        .filter((e) => e.offsetParent !== null && e.getBoundingClientRect().right > w + 1)
        .map((e) => e.id || e.tagName);
    });
    assert.deepEqual(wide, [], 'elements wider than the screen');
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= document.documentElement.clientWidth));
    await page.screenshot({ path: resolve(join(OUT, 'phone.png')), fullPage: true });
    assert.deepEqual(page.errors, []);
  } finally {
    await close();
  }
});

test('generate with the placeholder model, scrub, export, forward view (WebGPU)', async () => {
  const b = await openWithGpu(PLACEHOLDER);
  const { page, close } = b;
  try {
    assert.equal(await waitBody(page, 'model', ['ready', 'error']), 'ready', await page.textContent('#model-error'));
    console.log(`page load: WebGPU ready ${b.loadMs} ms, placeholder model ready ${Date.now() - b.t0} ms after navigation`);
    assert.match(await page.textContent('#gpu-status'), /\S/);
    assert.match(await page.textContent('#gpu-info'), /maxStorageBufferBindingSize/);
    assert.match(await page.textContent('#schedule-info'), /linear β 1e-4 → 0\.02 · T = 1000/);
    assert.match(await page.textContent('#model-info'), /assets\/placeholder\//);
    assert.match(await page.textContent('#model-status'), /1×16×16/);
    const blank = await canvasStats(page, 'canvas-xt');

    // DDIM, 10 steps, 4 samples, seed 7: the canvas changes and ends non-uniform…
    await generate(page, { n: 4, sampler: 'ddim', steps: 10, seed: 7 });
    assert.equal(await waitBody(page, 'run', ['done', 'error']), 'done', await page.textContent('#run-error'));
    const final = await canvasStats(page, 'canvas-xt');
    assert.notEqual(final.hash, blank.hash, 'x_t canvas did not change');
    assert.equal(final.w, 2 * 17 + 1, 'a 2×2 grid of 16×16 images with 1 px gaps');
    assert.ok(final.std > 10, `final grid looks uniform (luminance std ${final.std})`);
    assert.ok(final.colorfulness < 1, 'one channel draws as grayscale (only the gaps are tinted)');
    assert.equal(await page.textContent('#stat-steps'), '10 / 10');
    assert.match(await page.textContent('#stat-rate'), /^\d+\.\d$/);
    console.log(`DDIM 10 steps, N = 4: ${await page.textContent('#stat-rate')} steps/s`);
    assert.equal(await page.textContent('#view-t-label'), 'x₀ (sample)');
    assert.ok((await canvasStats(page, 'canvas-x0')).std > 10);

    // …and equals what the native CLI computes for the same settings.
    const shape = await page.evaluate(() => Array.from(window.ddpm.debug_last_shape()));
    const mine = await page.evaluate(() => Array.from(window.ddpm.debug_last_samples()));
    const native = readNpy(NATIVE_NPY);
    assert.deepEqual(shape, native.shape);
    const maxDiff = maxAbsDiff(mine, native.data);
    console.log(`page vs native ddpm sample: max |Δ| = ${maxDiff.toExponential(2)} over ${mine.length} values`);
    assert.ok(maxDiff < NATIVE_TOL, `page samples differ from the native CLI's by ${maxDiff}`);

    // Scrub to x_T: a different x_t (pure noise), label follows; ← → step one frame.
    assert.equal(await page.getAttribute('#view-t', 'max'), '10');
    await setRange(page, 'view-t', 0);
    assert.equal(await page.textContent('#view-t-label'), 't = 900');
    // The update that frame takes, with the schedule's numbers (linear β 1e-4 → 0.02, T = 1000).
    const abar = [];
    let prod = 1;
    for (let i = 0; i < 1000; i++) {
      prod *= 1 - (1e-4 + (0.02 - 1e-4) * (i / 999));
      abar.push(prod);
    }
    const math = await page.textContent('#step-math');
    assert.match(math, /t = 900 → 800/);
    assert.ok(math.includes(`ᾱ_t = ${abar[900].toFixed(5)}`), math);
    assert.ok(math.includes(`= ${Math.sqrt(abar[800]).toFixed(5)} · x̂0`), math);
    assert.match(math, /fresh noise σ² = 0\.00e0: 0\.0 %/, 'DDIM η = 0 adds no noise');
    const noisy = await canvasStats(page, 'canvas-xt');
    assert.notEqual(noisy.hash, final.hash, 'scrubbing did not change x_t');
    assert.ok(noisy.std > 10);
    await page.click('h1'); // focus outside the form controls
    await page.keyboard.press('ArrowRight');
    assert.equal(await page.inputValue('#view-t'), '1');
    assert.equal(await page.textContent('#view-t-label'), 't = 800');
    assert.notEqual((await canvasStats(page, 'canvas-xt')).hash, noisy.hash);
    await page.keyboard.press('ArrowLeft');
    assert.equal(await page.inputValue('#view-t'), '0');

    // Export PNG of the grid shown.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-png')]);
    assert.equal(download.suggestedFilename(), 'ddpm-seed7-t900.png');
    const png = readFileSync(await download.path());
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

    // Forward process on bundled MNIST digits (28×28): x_t follows t; stats follow.
    const options = await page.locator('#fwd-image option').allTextContents();
    assert.ok(options.includes('MNIST digit 3'), options.join(', '));
    assert.equal((await canvasStats(page, 'fwd-x0')).w, 30);
    await setRange(page, 'fwd-t', 0);
    await page.waitForFunction(() => document.getElementById('fwd-t-label').textContent === 't = 0');
    const x0 = await canvasStats(page, 'fwd-x0');
    const early = await canvasStats(page, 'fwd-xt');
    assert.ok(Math.abs(early.std - x0.std) < 3, `x_0 at t = 0 should look like x_0 (${early.std} vs ${x0.std})`);
    await setRange(page, 'fwd-t', 900);
    await page.waitForFunction(() => document.getElementById('fwd-t-label').textContent === 't = 900');
    const late = await canvasStats(page, 'fwd-xt');
    assert.notEqual(early.hash, late.hash);
    assert.match(await page.textContent('#fwd-stats'), /ᾱ_t = 0\.0\d+/);
    // Generated samples are offered as x_0.
    assert.ok((await page.locator('#fwd-image option').allTextContents()).includes('Generated #1'));

    // A long DDPM run draws as it goes, and Stop stops it.
    await generate(page, { n: 4, sampler: 'ddpm' });
    await page.waitForFunction(() => parseInt(document.getElementById('stat-steps').textContent) > 0);
    const a = await canvasStats(page, 'canvas-xt');
    await page.waitForFunction(
      ([s]) => parseInt(document.getElementById('stat-steps').textContent) > s || document.body.dataset.run !== 'running',
      [parseInt(await page.textContent('#stat-steps'))],
    );
    await page.evaluate(() => new Promise(requestAnimationFrame));
    const bb = await canvasStats(page, 'canvas-xt');
    assert.notEqual(a.hash, bb.hash, 'x_t canvas did not update during the run');
    await page.click('#stop');
    const state = await waitBody(page, 'run', ['stopped', 'done', 'error']);
    assert.equal(state, 'stopped', await page.textContent('#run-error'));
    const done = parseInt(await page.textContent('#stat-steps'));
    assert.ok(done > 0 && done < 1000, `stopped after ${done} steps`);
    assert.equal(await page.isDisabled('#view-t'), false, 'slider usable after Stop');
    assert.equal(await page.textContent('#view-t-label'), `t = ${1000 - done}`);

    // Generate again (same N: the plan is reused), then a screenshot.
    await setRange(page, 'view-t', 0);
    await generate(page, { n: 4, sampler: 'ddim', steps: 10, seed: 3 });
    assert.equal(await waitBody(page, 'run', ['done', 'error']), 'done', await page.textContent('#run-error'));
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

test('repeated Generates reuse the GPU plan and memory; several batches', async () => {
  const { page, close } = await openWithGpu(PLACEHOLDER);
  const stats = () => page.evaluate(() => Array.from(window.ddpm.debug_engine_stats()));
  const memory = () => page.evaluate(() => window.ddpmWasm.memory.buffer.byteLength);
  const run = async (opts) => {
    await generate(page, opts);
    assert.equal(await waitBody(page, 'run', ['done', 'error']), 'done', await page.textContent('#run-error'));
  };
  try {
    // Same N and sampler settings: one recorded forward pass, one sampler (restarted per seed),
    // and the wasm heap stops growing.
    await run({ n: 4, steps: 10, seed: 1 });
    await run({ n: 4, steps: 10, seed: 2 });
    const mem = await memory();
    for (const seed of [3, 4, 5]) await run({ n: 4, steps: 10, seed });
    assert.deepEqual(await stats(), [1, 1]);
    assert.equal(await memory(), mem, 'wasm memory grew over repeated Generates');
    // Other sampler settings: a new sampler over the same plan; another N: a new plan.
    await run({ n: 4, steps: 5 });
    assert.deepEqual(await stats(), [1, 2]);
    await run({ n: 3, steps: 5 });
    assert.deepEqual(await stats(), [2, 3]);

    // At most 2 images per pass (as if the device allowed no more): 4 samples in 2 batches.
    // Noise is keyed by each image's index in the whole run, so both batches equal the native
    // run of all 4 images in one batch (seed 7).
    await page.evaluate(() => window.ddpm.debug_max_batch(2));
    await run({ n: 4, steps: 10, seed: 7 });
    assert.match(await page.textContent('#run-status'), /Done/);
    assert.equal(await page.textContent('#stat-steps'), '20 / 20');
    assert.deepEqual((await stats())[0], 3);
    const mine = await page.evaluate(() => Array.from(window.ddpm.debug_last_samples()));
    const native = readNpy(NATIVE_NPY).data;
    const half = native.length / 2;
    let first = 0;
    let second = 0;
    for (let i = 0; i < half; i++) first = Math.max(first, Math.abs(mine[i] - native[i]));
    for (let i = half; i < native.length; i++) second = Math.max(second, Math.abs(mine[i] - native[i]));
    assert.ok(first < NATIVE_TOL, `batch 1 differs from the native run by ${first}`);
    assert.ok(second < NATIVE_TOL, `batch 2 differs from the native run by ${second}`);
    const grid = await canvasStats(page, 'canvas-xt');
    assert.equal(grid.w, 2 * 17 + 1);
    assert.ok(grid.std > 10);
    await setRange(page, 'view-t', 0);
    assert.equal(await page.textContent('#view-t-label'), 't = 900');
    assert.notEqual((await canvasStats(page, 'canvas-xt')).hash, grid.hash);
    assert.deepEqual(page.errors, []);
  } finally {
    await close();
  }
});

test('device loss is reported and the next Generate recovers', async () => {
  const { page, close } = await openWithGpu(PLACEHOLDER);
  try {
    await generate(page, { n: 2, steps: 3 });
    assert.equal(await waitBody(page, 'run', ['done', 'error']), 'done', await page.textContent('#run-error'));
    await page.evaluate(() => window.ddpm.debug_lose_device());
    await waitBody(page, 'gpu', ['lost']);
    assert.match(await page.textContent('#gpu-error'), /device was lost/);
    assert.equal(await page.isDisabled('#generate'), false);
    await generate(page, { n: 2, steps: 3 });
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
  // The fixture's weights at sample size 32 (the U-Net is convolutional): a 1×32×32 model.
  const { config, weights } = fixtureModel({ sample_size: 32 });
  const { page, close } = await openWithGpu(MNIST);
  try {
    await waitBody(page, 'model', ['ready']);
    // Missing weights: a clear error in the page.
    await page.setInputFiles('#model-files', [{ name: 'config.json', mimeType: 'application/json', buffer: config }]);
    await waitBody(page, 'model', ['error']);
    assert.match(await page.textContent('#model-error'), /no \.safetensors/);
    assert.match(await page.textContent('#model-status'), /Keeping the previous model/);

    // Corrupt weights.
    await page.setInputFiles('#model-files', [
      { name: 'config.json', mimeType: 'application/json', buffer: config },
      { name: 'diffusion_pytorch_model.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from('nonsense') },
    ]);
    await page.waitForFunction(() => /not a valid safetensors/.test(document.getElementById('model-error').textContent));
    assert.equal(await page.evaluate(() => document.body.dataset.model), 'error');

    // Weights that do not fit the config: the message names the tensor.
    const wider = fixtureModel({ block_out_channels: [16, 32, 64] });
    await page.setInputFiles('#model-files', [
      { name: 'config.json', mimeType: 'application/json', buffer: wider.config },
      { name: 'diffusion_pytorch_model.safetensors', mimeType: 'application/octet-stream', buffer: wider.weights },
    ]);
    await page.waitForFunction(() => /Could not load the model: .*(down|mid|up)_block/.test(document.getElementById('model-error').textContent));

    // A valid 1×32×32 model: info shown, no note, Generate draws 32×32 images.
    await page.setInputFiles('#model-files', [
      { name: 'config.json', mimeType: 'application/json', buffer: config },
      { name: 'diffusion_pytorch_model.safetensors', mimeType: 'application/octet-stream', buffer: weights },
    ]);
    await waitBody(page, 'model', ['ready']);
    assert.equal(await page.isHidden('#model-error'), true);
    assert.equal(await page.isHidden('#model-note'), true);
    assert.match(await page.textContent('#model-info'), /1×32×32/);
    assert.match(await page.textContent('#model-info'), /none given: DDPM defaults/);
    await generate(page, { n: 1, steps: 3 });
    assert.equal(await waitBody(page, 'run', ['done', 'error']), 'done', await page.textContent('#run-error'));
    const grid = await canvasStats(page, 'canvas-xt');
    assert.equal(grid.w, 32 + 2);
    assert.ok(grid.std > 10);

    // After a device loss the model is put on the new device.
    await page.evaluate(() => window.ddpm.debug_lose_device());
    await waitBody(page, 'gpu', ['lost']);
    await generate(page, { n: 2, steps: 3 });
    assert.equal(await waitBody(page, 'run', ['done', 'error']), 'done', await page.textContent('#run-error'));
    assert.equal((await canvasStats(page, 'canvas-xt')).w, 2 * 33 + 1);
    assert.equal(await page.evaluate(() => document.body.dataset.model), 'ready');
    assert.deepEqual(page.errors.filter((e) => !/destroy|lost/i.test(e)), []);
  } finally {
    await close();
  }

  // ?model=URL/ downloads config + weights (+ scheduler_config.json if present) with a progress bar.
  const b = await launch(WEBGPU_FLAGS);
  try {
    const served = [];
    await b.page.route('**/tiny/*', async (route) => {
      const url = route.request().url();
      served.push(url.split('/').pop());
      if (url.endsWith('/config.json')) return route.fulfill({ body: config, contentType: 'application/json' });
      if (url.endsWith('/diffusion_pytorch_model.safetensors')) {
        return route.fulfill({ body: weights, headers: { 'content-length': String(weights.length) } });
      }
      return route.fulfill({ status: 404 });
    });
    await b.page.goto(`${BASE}?model=tiny/`);
    assert.equal(await waitBody(b.page, 'model', ['ready', 'error']), 'ready', await b.page.textContent('#model-error'));
    assert.deepEqual(served, ['config.json', 'diffusion_pytorch_model.safetensors', 'scheduler_config.json']);
    assert.match(await b.page.textContent('#model-info'), /tiny\//);
    assert.match(await b.page.textContent('#model-info'), /none given: DDPM defaults/);
    assert.equal(await b.page.isHidden('#model-progress'), true, 'progress bar hidden when done');
    assert.equal(await b.page.isHidden('#model-note'), true, 'no placeholder note for a URL model');
    // The only console error: the browser's own line for the (optional) scheduler_config.json 404.
    assert.deepEqual(b.page.errors.filter((e) => !/404/.test(e)), []);
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
    assert.match(await page.textContent('#gpu-status'), /WebGPU unavailable/);
    // The model still loads (its info is shown) but Generate stays off.
    assert.equal(await waitBody(page, 'model', ['ready', 'error']), 'ready');
    assert.equal(await page.isDisabled('#generate'), true);
    // The forward view still works (the q_sample CPU twin).
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

// Opt-in (E2E_BENCH=1): DDPM over 1000 steps with N = 16, on the unconditional MNIST model and
// on the default model (class-conditional MNIST at its default guidance: both halves of the
// guided ε in one forward of 2N), each stopped after E2E_BENCH_SECONDS (default 60) unless it
// finishes; prints steps/s. E2E_KERNELS (reg, unrolled, tiled, heuristic, …) forces the page's
// kernel variant (?kernels=).
for (const [label, url] of [['unconditional MNIST', MNIST], ['default model', `${BASE}?`]]) {
  test(`benchmark: DDPM, N = 16, ${label}`, { skip: !process.env.E2E_BENCH }, async () => {
    const seconds = Number(process.env.E2E_BENCH_SECONDS ?? 60);
    const kernels = process.env.E2E_KERNELS ? `&kernels=${process.env.E2E_KERNELS}` : '';
    const { page, close } = await openWithGpu(url + kernels);
    try {
      await generate(page, { n: 16, sampler: 'ddpm' });
      await page.waitForFunction(() => document.body.dataset.run !== 'running', null, { timeout: seconds * 1000 }).catch(() => {});
      if ((await page.evaluate(() => document.body.dataset.run)) === 'running') await page.click('#stop');
      const state = await waitBody(page, 'run', ['stopped', 'done', 'error']);
      assert.notEqual(state, 'error', await page.textContent('#run-error'));
      console.log(`DDPM N = 16, ${label}: ${await page.textContent('#stat-steps')} steps in ${await page.textContent('#stat-elapsed')}: ${await page.textContent('#stat-rate')} steps/s`);
    } finally {
      await close();
    }
  });
}

/**
 * A Hub served from 127.0.0.1 (`/{owner}/{name}/resolve/{revision}/{file}`, CORS open):
 * `files` maps `owner/name/file` to bytes; `count()` is the number of requests served.
 */
async function startHub(files) {
  const { createServer } = await import('node:http');
  let count = 0;
  const server = createServer((req, res) => {
    count++;
    const m = req.url.match(/^\/([^/]+)\/([^/]+)\/resolve\/[^/]+\/(.+)$/);
    const body = m ? files[`${m[1]}/${m[2]}/${m[3]}`] : undefined;
    res.setHeader('Access-Control-Allow-Origin', '*');
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Length': body.length }).end(body);
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    count: () => count,
    close: () => new Promise((ok) => server.close(ok)),
  };
}

test('models by Hub id: both layouts from a test Hub, cached for the next load, errors name the URL', async () => {
  const tiny = fixtureModel();
  const hub = await startHub({
    'test/tiny/config.json': tiny.config,
    'test/tiny/diffusion_pytorch_model.safetensors': tiny.weights,
    'test/pipe/model_index.json': Buffer.from(JSON.stringify({
      _class_name: 'DDPMPipeline', scheduler: ['diffusers', 'DDPMScheduler'], unet: ['diffusers', 'UNet2DModel'],
    })),
    'test/pipe/unet/config.json': tiny.config,
    'test/pipe/unet/diffusion_pytorch_model.safetensors': tiny.weights,
    'test/bin/config.json': tiny.config,
    'test/bin/diffusion_pytorch_model.bin': readFileSync(
      new URL('../../tests/fixtures/torch_bin/f16/diffusion_pytorch_model.bin', import.meta.url),
    ),
    'test/pipe/scheduler/scheduler_config.json': Buffer.from(JSON.stringify({
      _class_name: 'DDPMScheduler', num_train_timesteps: 500, beta_schedule: 'squaredcos_cap_v2',
    })),
  });
  const { page, close } = await openWithGpu(`${BASE}?model=hf:test/tiny&hub=${hub.url}`);
  const status = () => page.textContent('#model-status');
  try {
    assert.equal(await waitBody(page, 'model', ['ready', 'error']), 'ready', await page.textContent('#model-error'));
    assert.match(await status(), /1×16×16/);
    assert.match(await page.textContent('#model-info'), new RegExp(`hf:test/tiny@main \\(${hub.url}\\)`));
    // The Hub's copy of the placeholder draws what the CLI draws from assets/placeholder.
    await generate(page, { n: 4, sampler: 'ddim', steps: 10, seed: 7 });
    assert.equal(await waitBody(page, 'run', ['done', 'error']), 'done', await page.textContent('#run-error'));
    const mine = await page.evaluate(() => Array.from(window.ddpm.debug_last_samples()));
    assert.ok(maxAbsDiff(mine, readNpy(NATIVE_NPY).data) < NATIVE_TOL, 'Hub model samples differ from the CLI');

    // A reload loads it from Cache Storage: no request reaches the Hub.
    const served = hub.count();
    await page.reload();
    assert.equal(await waitBody(page, 'model', ['ready', 'error']), 'ready', await page.textContent('#model-error'));
    assert.match(await page.textContent('#model-info'), /hf:test\/tiny@main \(from the browser cache\)/);
    assert.equal(hub.count(), served, 'the reload downloaded again');

    // A pipeline repo through the "Load from the Hub" field: its unet/ and scheduler/.
    await page.fill('#hub-id', 'test/pipe');
    await page.click('#hub-load');
    await page.waitForFunction(() => /hf:test\/pipe@main/.test(document.querySelector('#model-info').textContent));
    assert.equal(await waitBody(page, 'model', ['ready', 'error']), 'ready');
    assert.match(await page.textContent('#schedule-info'), /T = 500/);

    // PyTorch .bin weights (read without running their pickle).
    await page.fill('#hub-id', 'test/bin@main');
    await page.click('#hub-load');
    await page.waitForFunction(() => /hf:test\/bin@main/.test(document.querySelector('#model-info').textContent));
    assert.equal(await waitBody(page, 'model', ['ready', 'error']), 'ready', await page.textContent('#model-error'));

    // An unknown repo: the error names the URLs tried; the previous model stays.
    await page.fill('#hub-id', 'nobody/none');
    await page.click('#hub-load');
    assert.equal(await waitBody(page, 'model', ['error']), 'error');
    const err = await page.textContent('#model-error');
    assert.ok(err.includes(`${hub.url}/nobody/none/resolve/main/config.json`), err);
    assert.match(await status(), /Keeping the previous model/);
    // The paper's models are on the menu.
    const menu = await page.$$eval('#hub-menu option', (o) => o.map((x) => x.value));
    assert.ok(menu.includes('google/ddpm-cifar10-32') && menu.includes('google/ddpm-celebahq-256'));
    // The browser logs each 404 probe (files a layout may lack); nothing else may fail.
    assert.deepEqual(page.errors.filter((e) => !/Failed to load resource.*404/.test(e)), []);
  } finally {
    await close();
    await hub.close();
  }
});

test('a class-conditional model: class picker and guidance; the page draws what the CLI draws', async () => {
  const dir = new URL('../../tests/fixtures/unet_class_cond/', import.meta.url);
  const config = JSON.parse(readFileSync(new URL('config.json', dir), 'utf8'));
  config.ddpm_null_class = 10;
  const hub = await startHub({
    'test/cond/config.json': Buffer.from(JSON.stringify(config)),
    'test/cond/diffusion_pytorch_model.safetensors': readFileSync(new URL('diffusion_pytorch_model.safetensors', dir)),
  });
  const { page, close } = await openWithGpu(`${BASE}?model=hf:test/cond&hub=${hub.url}`);
  try {
    assert.equal(await waitBody(page, 'model', ['ready', 'error']), 'ready', await page.textContent('#model-error'));
    assert.equal(await page.isVisible('#class-options'), true);
    const options = await page.$$eval('#class option', (o) => o.map((x) => x.value));
    assert.deepEqual(options, ['each', ...Array.from({ length: 10 }, (_, i) => String(i))], 'ten classes, not the null row');
    assert.equal(await page.isEnabled('#guidance'), true);
    // `ddpm sample --class 3 --guidance 2.5 --n 4 --seed 7 --sampler ddim --steps 10`.
    await page.selectOption('#class', '3');
    await setRange(page, 'guidance', 2.5);
    assert.match(await page.textContent('#guidance-value'), /w = 2\.5/);
    await generate(page, { n: 4, sampler: 'ddim', steps: 10, seed: 7 });
    assert.equal(await waitBody(page, 'run', ['done', 'error']), 'done', await page.textContent('#run-error'));
    const guided = await page.evaluate(() => Array.from(window.ddpm.debug_last_samples()));
    const native = readNpy(new URL('./fixtures/cond-ddim10-class3-w2.5-seed7.npy', import.meta.url).pathname);
    const diff = maxAbsDiff(guided, native.data);
    console.log(`guided page vs native ddpm sample: max |Δ| = ${diff.toExponential(2)}`);
    assert.ok(diff < NATIVE_TOL, `guided samples differ from the CLI's by ${diff}`);
    // Guidance 1 (plain conditional) draws something else from the same seed.
    await setRange(page, 'guidance', 1);
    assert.match(await page.textContent('#guidance-value'), /plain conditional/);
    await generate(page, { n: 4, sampler: 'ddim', steps: 10, seed: 7 });
    assert.equal(await waitBody(page, 'run', ['done', 'error']), 'done', await page.textContent('#run-error'));
    const plain = await page.evaluate(() => Array.from(window.ddpm.debug_last_samples()));
    assert.ok(maxAbsDiff(plain, guided) > 1e-2, 'guidance changed nothing');
    assert.deepEqual(page.errors.filter((e) => !/Failed to load resource.*404/.test(e)), []);
  } finally {
    await close();
    await hub.close();
  }
});
