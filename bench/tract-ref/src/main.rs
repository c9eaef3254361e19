//! The `predict_onnx` reference: loads an ONNX model the way the engine does (input fact with a
//! symbolic batch dimension `N`, then `into_optimized`), and runs it in a tight loop on a fixed
//! input of `--batch` rows, on `--threads` threads sharing the plan. Prints one line:
//! `TRACT_REF batch=B threads=T runs=R items=I seconds=S items_per_s=X`.
//!
//! Usage: tract-ref MODEL.onnx FEATURES --batch B [--threads T] [--seconds S]

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tract_onnx::prelude::*;

struct Options {
    model: String,
    features: usize,
    batch: usize,
    threads: usize,
    seconds: f64,
}

fn options() -> anyhow::Result<Options> {
    let mut args = std::env::args().skip(1);
    let model = args
        .next()
        .context("usage: tract-ref MODEL.onnx FEATURES --batch B [--threads T] [--seconds S]")?;
    let features = args.next().context("missing FEATURES")?.parse()?;
    let mut options = Options {
        model,
        features,
        batch: 1,
        threads: 1,
        seconds: 5.0,
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--batch" => options.batch = value.parse()?,
            "--threads" => options.threads = value.parse()?,
            "--seconds" => options.seconds = value.parse()?,
            other => bail!("unknown option {other}"),
        }
    }
    Ok(options)
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    let mut model = tract_onnx::onnx().model_for_path(&options.model)?;
    let batch = model.symbols.sym("N");
    model.set_input_fact(
        0,
        InferenceFact::dt_shape(
            f32::datum_type(),
            tvec![batch.to_dim(), options.features.to_dim()],
        ),
    )?;
    let plan = model.into_optimized()?.into_runnable()?;
    let input: Tensor = tract_ndarray::Array2::<f32>::from_shape_fn(
        (options.batch, options.features),
        |(row, column)| ((row * 31 + column * 7) % 97) as f32 / 97.0 - 0.5,
    )
    .into();
    let input = input.into_tvalue();
    let duration = Duration::from_secs_f64(options.seconds);
    let started = Instant::now();
    let runs: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..options.threads)
            .map(|_| {
                let plan = &plan;
                let input = input.clone();
                scope.spawn(move || -> anyhow::Result<usize> {
                    let mut runs = 0;
                    while started.elapsed() < duration {
                        plan.run(tvec![input.clone()])?;
                        runs += 1;
                    }
                    Ok(runs)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .map_err(|_| anyhow::anyhow!("a run panicked"))?
            })
            .sum::<anyhow::Result<usize>>()
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let items = runs * options.batch;
    println!(
        "TRACT_REF batch={} threads={} runs={runs} items={items} seconds={seconds:.2} items_per_s={:.0}",
        options.batch,
        options.threads,
        items as f64 / seconds
    );
    Ok(())
}
