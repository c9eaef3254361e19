//! The `predict_onnx` reference: ONNX Runtime in-process, laid out as the engine lays a model
//! out (one session per thread, `--intra` intra-op threads each, spinning off), each session
//! running the graph in a tight loop on a fixed input of `--batch` examples. Inputs are built
//! from the graph's own signature: the batch dimension is `--batch`, a dynamic dimension named
//! `NAME` in the graph is `--dim NAME=SIZE`; floats are 0.5, integers 1, booleans true.
//! Prints one line:
//! `ORT_REF batch=B sessions=S intra=T runs=R items=I seconds=S items_per_s=X`.
//!
//! Usage: ort-ref MODEL.onnx --batch B [--sessions S] [--intra T] [--seconds S]
//!        [--dim NAME=SIZE ...]
//! The library: `ORT_DYLIB_PATH`, else `onnxruntime/libonnxruntime.so` (what
//! `scripts/install-onnxruntime.sh` installs).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

const USAGE: &str = "usage: ort-ref MODEL.onnx --batch B [--sessions S] [--intra T] [--seconds S] \
                     [--dim NAME=SIZE ...]";

struct Options {
    model: String,
    batch: usize,
    sessions: usize,
    intra: usize,
    seconds: f64,
    dims: HashMap<String, i64>,
}

fn options() -> anyhow::Result<Options> {
    let mut args = std::env::args().skip(1);
    let model = args.next().context(USAGE)?;
    let mut options = Options {
        model,
        batch: 1,
        sessions: 1,
        intra: 1,
        seconds: 5.0,
        dims: HashMap::new(),
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--batch" => options.batch = value.parse()?,
            "--sessions" => options.sessions = value.parse()?,
            "--intra" => options.intra = value.parse()?,
            "--seconds" => options.seconds = value.parse()?,
            "--dim" => {
                let (name, size) = value.split_once('=').context("--dim NAME=SIZE")?;
                options.dims.insert(name.to_owned(), size.parse()?);
            }
            other => bail!("unknown option {other}; {USAGE}"),
        }
    }
    Ok(options)
}

/// One input of the graph, filled with a constant, the batch first.
fn input(name: &str, dtype: &ValueType, options: &Options) -> anyhow::Result<(String, DynValue)> {
    let ValueType::Tensor {
        ty,
        shape,
        dimension_symbols,
    } = dtype
    else {
        bail!("input `{name}` is not a tensor");
    };
    let mut dims = Vec::with_capacity(shape.len());
    for (axis, &dim) in shape.iter().enumerate() {
        dims.push(match (axis, dim) {
            (0, _) => i64::try_from(options.batch)?,
            (_, size) if size >= 0 => size,
            _ => {
                let symbol = dimension_symbols
                    .get(axis)
                    .map(String::as_str)
                    .unwrap_or_default();
                *options.dims.get(symbol).with_context(|| {
                    format!("input `{name}` axis {axis} is dynamic (`{symbol}`): give --dim {symbol}=SIZE")
                })?
            }
        });
    }
    let count = usize::try_from(dims.iter().product::<i64>())?;
    let value = match ty {
        TensorElementType::Float32 => Tensor::from_array((dims, vec![0.5_f32; count]))?.into_dyn(),
        TensorElementType::Float64 => Tensor::from_array((dims, vec![0.5_f64; count]))?.into_dyn(),
        TensorElementType::Int64 => Tensor::from_array((dims, vec![1_i64; count]))?.into_dyn(),
        TensorElementType::Int32 => Tensor::from_array((dims, vec![1_i32; count]))?.into_dyn(),
        TensorElementType::Bool => Tensor::from_array((dims, vec![true; count]))?.into_dyn(),
        other => bail!("input `{name}` is {other}: not supported by ort-ref"),
    };
    Ok((name.to_owned(), value))
}

/// A session as the engine builds one (crates/onnx/src/runtime/onnxruntime.rs).
fn session(environment: &ort::environment::Environment, options: &Options) -> ort::Result<Session> {
    Session::builder(environment)?
        .with_optimization_level(GraphOptimizationLevel::All)?
        .with_intra_threads(options.intra)?
        .with_inter_threads(1)?
        .with_intra_op_spinning(false)?
        .commit_from_file(&options.model)
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    let library = std::env::var("ORT_DYLIB_PATH")
        .unwrap_or_else(|_| "onnxruntime/libonnxruntime.so".to_owned());
    let environment = ort::init_from(&library)
        .with_context(|| format!("loading ONNX Runtime from {library}"))?
        .with_name("ort-ref")
        .build()?;
    let duration = Duration::from_secs_f64(options.seconds);
    let mut sessions = Vec::with_capacity(options.sessions);
    for _ in 0..options.sessions {
        sessions.push(session(&environment, &options)?);
    }
    let started = Instant::now();
    let runs: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = sessions
            .iter_mut()
            .map(|session| {
                let options = &options;
                scope.spawn(move || -> anyhow::Result<usize> {
                    let signature = session
                        .inputs()
                        .iter()
                        .map(|outlet| (outlet.name().to_owned(), outlet.dtype().clone()))
                        .collect::<Vec<_>>();
                    let mut runs = 0;
                    while started.elapsed() < duration {
                        // Fresh inputs each run, as every engine request brings its own.
                        let inputs = signature
                            .iter()
                            .map(|(name, dtype)| input(name, dtype, options))
                            .collect::<anyhow::Result<Vec<_>>>()?;
                        session.run(inputs)?;
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
    #[allow(clippy::cast_precision_loss)]
    let items_per_s = items as f64 / seconds;
    println!(
        "ORT_REF batch={} sessions={} intra={} runs={runs} items={items} seconds={seconds:.2} \
         items_per_s={items_per_s:.1}",
        options.batch, options.sessions, options.intra
    );
    Ok(())
}
