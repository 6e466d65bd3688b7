//! `ddpm loss`: L_simple per timestep ([`ddpm::loss_curve`]) on the page's bundled examples or
//! on a dataset's first images — where the model is sure of the noise and where it is not.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context};
use ddpm::data::{examples, Source};
use ddpm::loss_curve::{even_timesteps, loss_per_timestep, LossSetup};
use ddpm::model::UNet;

use super::{display, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Measure on this dataset's first --count training images (mnist, fashion, emoji);
    /// default: the examples the page bundles for the model's dataset (assets/examples: eight
    /// MNIST digits, or one Fashion-MNIST image per class).
    #[arg(long)]
    data: Option<Source>,
    /// Images taken from --data.
    #[arg(long, default_value_t = 64)]
    count: usize,
    /// Data directory of --data (as `bash scripts/fetch_data.sh` fills it).
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// Timesteps, spread evenly over 0..T−1 (bucket midpoints).
    #[arg(long, default_value_t = 10)]
    timesteps: usize,
    /// Noise draws per image and timestep.
    #[arg(long, default_value_t = 4)]
    draws: usize,
    /// Seed of the noise (draw d of image j is the same at every t).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// diffusers scheduler_config.json (default: next to the model, else DDPM's).
    #[arg(long)]
    scheduler: Option<PathBuf>,
    /// Also write `t,loss` rows as CSV.
    #[arg(long)]
    csv: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (cfg, weights) = args.model.load()?;
    let sched = args.model.scheduler(args.scheduler.as_deref())?;
    let abar = sched.schedule()?.alphas_cumprod();
    let ds = match args.data {
        None => examples::dataset_of(&cfg)
            .and_then(examples::of)
            .unwrap_or_else(examples::mnist)?,
        Some(src) => src
            .load(&args.data_dir)
            .with_context(|| format!("loading {src} from {}", display(&args.data_dir)))?
            .truncate(args.count)?,
    };
    let (images, shape) = examples::as_tensor(&ds)?;
    let (h, w) = cfg.sample_hw().unwrap_or((shape[2], shape[3]));
    if [shape[1], shape[2], shape[3]] != [cfg.in_channels, h, w] {
        bail!(
            "the images are {}×{}×{} but the model takes {}×{h}×{w}",
            shape[1],
            shape[2],
            shape[3],
            cfg.in_channels
        );
    }
    let classes = cfg.classes();
    let labels: Option<Vec<f32>> = match (classes.is_empty(), ds.labels()) {
        (true, _) => None,
        (false, Some(l)) => Some(l.iter().map(|&c| c as f32).collect()),
        (false, None) => match cfg.ddpm_null_class {
            Some(null) => Some(vec![null as f32; shape[0]]),
            None => bail!("the model is class-conditional but the images have no labels"),
        },
    };
    let timesteps = even_timesteps(args.timesteps, abar.len());
    let setup = LossSetup {
        images: &images,
        shape,
        labels: labels.as_deref(),
        timesteps: &timesteps,
        draws: args.draws,
        seed: args.seed,
    };
    let gpu = super::gpu()?;
    let unet = UNet::new(&gpu, cfg, &weights)?;
    let curve = pollster::block_on(loss_per_timestep(&gpu, &unet, &abar, &setup))?;
    let top = curve.loss.iter().cloned().fold(0.0, f64::max).max(1e-12);
    println!(
        "L_simple = mean ‖ε − ε̂‖² over {} {} image(s) × {} draw(s) per t:",
        shape[0],
        ds.name(),
        args.draws
    );
    println!("{:>5} {:>9} {:>9}", "t", "ᾱ_t", "loss");
    let mut csv = String::from("t,loss\n");
    for (&t, &l) in curve.timesteps.iter().zip(&curve.loss) {
        let bar = "█".repeat((40.0 * l / top).round() as usize);
        println!("{t:>5} {:>9.5} {l:>9.5} {bar}", abar[t]);
        writeln!(csv, "{t},{l}").expect("writing to a String");
    }
    let mean = curve.loss.iter().sum::<f64>() / curve.loss.len() as f64;
    println!("mean over t: {mean:.5}");
    if let Some(path) = &args.csv {
        std::fs::write(path, csv).with_context(|| format!("writing {}", display(path)))?;
        eprintln!("wrote {}", display(path));
    }
    Ok(())
}
