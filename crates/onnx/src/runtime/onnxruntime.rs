//! ONNX Runtime through the `ort` crate: the library, loaded once per process from
//! `ORT_DYLIB_PATH` or the default locations, and [`OrtGraph`], a model's sessions.
//!
//! A session runs one request at a time (`ort` requires `&mut` for a run: some of ONNX
//! Runtime's allocators are not thread safe), so a model keeps one session per thread of its
//! executor pool by default, each with its share of the machine's cores as intra-op threads,
//! like Triton's model instances.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, TryLockError};

use inference_engine_core::pipeline::PipelineError;
use inference_engine_core::source::LoadContext;
use inference_engine_core::tensor::{Tensor, TensorData};
use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider as _};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue, SessionOutputs};
use ort::value::{DynMapValueType, DynValue, TensorElementType, ValueType};
use serde_json::{Map, Number, Value};

use crate::error::OnnxError;
use crate::manifest::{
    DataType, ExecutionProvider, Manifest, OptimizationLevel, TensorManifest, TensorType,
};
use crate::outputs::Output;
use crate::runtime::Graph;

/// Where the engine looks for the library when `ORT_DYLIB_PATH` is not set, in order: the
/// folder `scripts/install-onnxruntime.sh` fills (relative to the working directory, or to the
/// executable's folder), then the system's library path.
const DEFAULT_LIBRARIES: [&str; 2] = ["onnxruntime/libonnxruntime.so", "libonnxruntime.so"];

/// The ONNX Runtime library this process loaded, and its environment.
pub struct OnnxRuntime {
    environment: Environment,
    version: String,
    library: PathBuf,
}

impl fmt::Debug for OnnxRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnnxRuntime")
            .field("version", &self.version)
            .field("library", &self.library)
            .finish_non_exhaustive()
    }
}

/// The library loaded so far: a process loads it once (ONNX Runtime allows one environment).
/// Never held while anything but the load runs.
static LOADED: Mutex<Option<Arc<OnnxRuntime>>> = Mutex::new(None);

impl OnnxRuntime {
    /// Loads the library at `library` (`ORT_DYLIB_PATH`), or from [`DEFAULT_LIBRARIES`], once
    /// per process: later calls return the first one loaded. The error is one sentence that
    /// names what was tried and how to fix it.
    pub fn load(library: Option<&Path>) -> Result<Arc<Self>, String> {
        let mut loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(runtime) = loaded.as_ref() {
            return Ok(Arc::clone(runtime));
        }
        let runtime = match library {
            Some(path) => Self::load_from(path).map_err(|reason| {
                format!(
                    "ONNX Runtime cannot be loaded from ORT_DYLIB_PATH={}: {reason}; point it at \
                     libonnxruntime.so {} or newer (scripts/install-onnxruntime.sh installs it)",
                    path.display(),
                    minimum_version()
                )
            })?,
            None => {
                let mut failures = Vec::new();
                let mut found = None;
                for candidate in DEFAULT_LIBRARIES {
                    match Self::load_from(Path::new(candidate)) {
                        Ok(runtime) => {
                            found = Some(runtime);
                            break;
                        }
                        Err(reason) => failures.push(reason),
                    }
                }
                found.ok_or_else(|| {
                    format!(
                        "ONNX Runtime is not installed ({}); run scripts/install-onnxruntime.sh, \
                         or set ORT_DYLIB_PATH to libonnxruntime.so {} or newer, or \
                         ONNX_RUNTIME=tract to run every model on tract",
                        failures.join("; "),
                        minimum_version()
                    )
                })?
            }
        };
        let runtime = Arc::new(runtime);
        *loaded = Some(Arc::clone(&runtime));
        Ok(runtime)
    }

    fn load_from(path: &Path) -> Result<Self, String> {
        let builder = ort::init_from(path).map_err(|err| err.to_string())?;
        let environment = builder
            .with_name("inference-engine")
            .with_telemetry(false)
            .build()
            .map_err(|err| err.to_string())?;
        let library = resolved_library(path);
        Ok(Self {
            environment,
            version: file_version(&library).unwrap_or_else(|| {
                format!(
                    "{} or newer (the library's file name has no version)",
                    minimum_version()
                )
            }),
            library,
        })
    }

    /// `1.31.1`, from the library's file name (`libonnxruntime.so.1.31.1`, which the
    /// default `libonnxruntime.so` links to): the library's own version string is not part
    /// of `ort`'s API, and its build information names a branch, not a release.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The library file as the engine named it.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// Whether the library has a CUDA execution provider.
    pub fn has_cuda(&self) -> bool {
        ep::CUDA::is_available().unwrap_or(false)
    }
}

/// The oldest library the `ort` crate accepts (its API level).
fn minimum_version() -> String {
    format!("1.{}", ort::MINOR_VERSION)
}

/// `…/libonnxruntime.so` → (following links) `libonnxruntime.so.1.31.1` → `1.31.1`.
fn file_version(library: &Path) -> Option<String> {
    let real = std::fs::canonicalize(library).ok()?;
    let name = real.file_name()?.to_str()?;
    let (_, version) = name.split_once(".so.")?;
    let is_version = !version.is_empty()
        && version
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit()));
    is_version.then(|| version.to_owned())
}

/// A relative library path as `ort` resolves it: next to the executable when a file is
/// there, else as given (the working directory, or the system's search path for a bare name).
fn resolved_library(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(path)))
        .filter(|candidate| candidate.exists())
        .unwrap_or_else(|| path.to_owned())
}

/// A model's ONNX Runtime sessions.
pub(crate) struct OrtGraph {
    sessions: Vec<Mutex<Session>>,
    /// Where the next run starts looking for a free session, so runs spread over them.
    next: AtomicUsize,
    /// Declared outputs, in the manifest's order.
    outputs: Vec<(String, DataType)>,
}

impl OrtGraph {
    /// Builds the model's sessions from the file at `path` and checks the graph against the
    /// manifest. Blocking.
    pub(crate) fn load(
        runtime: &OnnxRuntime,
        path: &Path,
        manifest: &Manifest,
        context: &LoadContext,
        cores: usize,
    ) -> Result<Self, OnnxError> {
        let options = manifest.onnxruntime.unwrap_or_default();
        let concurrency = context.executor_threads.max(1);
        let sessions = options
            .sessions
            .unwrap_or(concurrency)
            .clamp(1, concurrency);
        let intra_op_threads = options
            .intra_op_threads
            .unwrap_or_else(|| (cores / concurrency).max(1));
        if options.execution_provider == ExecutionProvider::Cuda && !runtime.has_cuda() {
            return Err(OnnxError::Model(format!(
                "execution_provider = \"cuda\": ONNX Runtime {} at {} has no CUDA execution \
                 provider (it is a CPU build; the onnxruntime-gpu wheel has one)",
                runtime.version,
                runtime.library.display()
            )));
        }
        let build = || {
            build_session(runtime, path, &options, intra_op_threads).map_err(|err| {
                OnnxError::Model(format!("ONNX Runtime cannot load the graph: {err}"))
            })
        };
        // The first session is checked against the manifest before the others are built.
        let first = build()?;
        check_signature(&first, manifest)?;
        let mut built = Vec::with_capacity(sessions);
        built.push(first);
        for _ in 1..sessions {
            built.push(build()?);
        }
        tracing::debug!(
            path = %path.display(),
            sessions,
            intra_op_threads,
            provider = options.execution_provider.as_str(),
            "ONNX Runtime sessions ready"
        );
        Ok(Self {
            sessions: built.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
            outputs: manifest
                .outputs
                .iter()
                .map(|output| (output.name.clone(), output.datatype))
                .collect(),
        })
    }

    /// Runs `work` on a free session, or waits for one: the first free one from a rotating
    /// start, else the session at that start.
    fn with_session<T>(&self, work: impl FnOnce(&mut Session) -> T) -> T {
        let count = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        for offset in 0..count {
            // A run that panicked cannot leave a session half-changed in a way the next run
            // sees: ONNX Runtime keeps no state between runs.
            match self.sessions[(start + offset) % count].try_lock() {
                Ok(mut session) => return work(&mut session),
                Err(TryLockError::Poisoned(poisoned)) => return work(&mut poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let mut session = self.sessions[start]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        work(&mut session)
    }
}

fn build_session(
    runtime: &OnnxRuntime,
    path: &Path,
    options: &crate::manifest::OrtOptions,
    intra_op_threads: usize,
) -> ort::Result<Session> {
    let level = match options.graph_optimization_level {
        OptimizationLevel::Disabled => GraphOptimizationLevel::Disable,
        OptimizationLevel::Basic => GraphOptimizationLevel::Level1,
        OptimizationLevel::Extended => GraphOptimizationLevel::Level2,
        OptimizationLevel::All => GraphOptimizationLevel::All,
    };
    let mut builder = Session::builder(&runtime.environment)?
        .with_optimization_level(level)?
        .with_intra_threads(intra_op_threads)?
        .with_inter_threads(1)?
        // Idle intra-op threads would spin on cores other sessions' runs need.
        .with_intra_op_spinning(false)?;
    if options.execution_provider == ExecutionProvider::Cuda {
        builder =
            builder.with_execution_providers([ep::CUDA::default().build().error_on_failure()])?;
    }
    builder.commit_from_file(path)
}

/// Every graph input is declared, with its element type and rank, and every declared output
/// exists with the declared type.
fn check_signature(session: &Session, manifest: &Manifest) -> Result<(), OnnxError> {
    let graph_inputs = session
        .inputs()
        .iter()
        .map(|input| input.name().to_owned())
        .collect::<Vec<_>>();
    crate::pipeline::check_declared("input", &manifest.inputs, &graph_inputs)?;
    for input in session.inputs() {
        if let Some(declared) = manifest
            .inputs
            .iter()
            .find(|tensor| tensor.name == input.name())
        {
            check_type("input", declared, input.dtype())?;
        }
    }
    for declared in &manifest.outputs {
        let graph = session
            .outputs()
            .iter()
            .find(|output| output.name() == declared.name)
            .ok_or_else(|| {
                let names = session
                    .outputs()
                    .iter()
                    .map(|output| output.name().to_owned())
                    .collect::<Vec<_>>();
                OnnxError::Model(format!(
                    "output `{}` is not an output of the graph (graph outputs: {})",
                    declared.name,
                    crate::pipeline::quoted(&names)
                ))
            })?;
        check_type("output", declared, graph.dtype())?;
    }
    Ok(())
}

/// A declared tensor against the graph's type: same kind and element type, same rank, and
/// where both fix a dimension, the same size. The batch must be free in the graph.
fn check_type(what: &str, declared: &TensorManifest, graph: &ValueType) -> Result<(), OnnxError> {
    let mismatch = |found: String| {
        OnnxError::Model(format!(
            "{what} `{}` is {found} in the graph but model.toml says {} {:?}",
            declared.name, declared.datatype, declared.shape
        ))
    };
    match (declared.datatype, graph) {
        (DataType::Tensor(element), ValueType::Tensor { ty, shape, .. }) => {
            let graph_type = tensor_type(*ty);
            let dims = shape.iter().copied().collect::<Vec<_>>();
            let describe = || {
                format!(
                    "{} {dims:?}",
                    graph_type.map_or("an unsupported type", TensorType::as_str)
                )
            };
            if graph_type != Some(element) {
                return Err(mismatch(describe()));
            }
            // A graph may leave its rank unknown (an empty shape for a dynamic-rank output).
            if dims.is_empty() && what == "output" {
                return Ok(());
            }
            let sizes_agree = dims.len() == declared.shape.len()
                && dims
                    .iter()
                    .zip(&declared.shape)
                    .skip(1)
                    .all(|(&graph, &declared)| graph < 0 || declared < 0 || graph == declared);
            if !sizes_agree {
                return Err(mismatch(describe()));
            }
            if dims.first().is_some_and(|&batch| batch > 1) {
                return Err(OnnxError::Model(format!(
                    "{what} `{}` has a fixed batch dimension of {} in the graph; the engine \
                     stacks requests along the first dimension, so re-export the model with a \
                     dynamic batch axis",
                    declared.name, dims[0]
                )));
            }
            Ok(())
        }
        (DataType::Map, ValueType::Sequence(inner)) if matches!(**inner, ValueType::Map { .. }) => {
            Ok(())
        }
        (_, other) => Err(mismatch(other.to_string())),
    }
}

/// The engine's element type of an ONNX Runtime tensor type, if it has one.
fn tensor_type(element: TensorElementType) -> Option<TensorType> {
    Some(match element {
        TensorElementType::Float32 => TensorType::Fp32,
        TensorElementType::Float64 => TensorType::Fp64,
        TensorElementType::Float16 => TensorType::Fp16,
        TensorElementType::Bfloat16 => TensorType::Bf16,
        TensorElementType::Int64 => TensorType::Int64,
        TensorElementType::Int32 => TensorType::Int32,
        TensorElementType::Int16 => TensorType::Int16,
        TensorElementType::Int8 => TensorType::Int8,
        TensorElementType::Uint64 => TensorType::Uint64,
        TensorElementType::Uint32 => TensorType::Uint32,
        TensorElementType::Uint16 => TensorType::Uint16,
        TensorElementType::Uint8 => TensorType::Uint8,
        TensorElementType::Bool => TensorType::Bool,
        TensorElementType::String => TensorType::Bytes,
        _ => return None,
    })
}

impl Graph for OrtGraph {
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Output>, PipelineError> {
        let values = inputs
            .into_iter()
            .map(|tensor| {
                let name = tensor.name.clone();
                to_value(tensor).map(|value| (name, SessionInputValue::from(value)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.with_session(|session| {
            let mut outputs = session.run(values).map_err(|err| run_error(&err))?;
            self.outputs
                .iter()
                .map(|(name, datatype)| take_output(&mut outputs, name, *datatype))
                .collect()
        })
    }
}

/// An invalid argument is almost always the input (a wrong shape or type for the graph): the
/// caller's 422, not the model's 500.
fn run_error(err: &ort::Error) -> PipelineError {
    let message = format!("ONNX Runtime: {}", err.message());
    if err.code() == ort::ErrorCode::InvalidArgument {
        PipelineError::InvalidInput(message)
    } else {
        PipelineError::Inference(message)
    }
}

/// Moves a core tensor into an ONNX Runtime value (no copy for plain element types).
fn to_value(tensor: Tensor) -> Result<DynValue, PipelineError> {
    let Tensor { name, shape, data } = tensor;
    let failed = |err: ort::Error| PipelineError::Inference(format!("input `{name}`: {err}"));
    let shape = shape
        .iter()
        .map(|&dim| i64::try_from(dim).unwrap_or(i64::MAX))
        .collect::<Vec<_>>();
    macro_rules! owned {
        ($values:expr) => {
            ort::value::Tensor::from_array((shape, $values))
                .map(ort::value::Value::into_dyn)
                .map_err(failed)
        };
    }
    match_plain_elements! {
        data,
        values => owned!(values),
        TensorData::Fp16(bits) => owned!(
            bits.into_iter()
                .map(half::f16::from_bits)
                .collect::<Vec<_>>()
        ),
        TensorData::Bf16(bits) => owned!(
            bits.into_iter()
                .map(half::bf16::from_bits)
                .collect::<Vec<_>>()
        ),
        TensorData::Bytes(items) => {
            let texts = items
                .into_iter()
                .map(String::from_utf8)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| {
                    PipelineError::InvalidInput(format!(
                        "input `{name}` is a string tensor and holds bytes that are not UTF-8"
                    ))
                })?;
            ort::value::Tensor::from_string_array((shape, texts.as_slice()))
                .map(ort::value::Value::into_dyn)
                .map_err(failed)
        }
    }
}

/// Takes output `name` out of a run's outputs as the manifest declares it.
fn take_output(
    outputs: &mut SessionOutputs<'_>,
    name: &str,
    datatype: DataType,
) -> Result<Output, PipelineError> {
    let value = outputs.remove(name).ok_or_else(|| {
        PipelineError::Inference(format!("ONNX Runtime did not return output `{name}`"))
    })?;
    let failed = |err: ort::Error| PipelineError::Inference(format!("output `{name}`: {err}"));
    match datatype {
        DataType::Map => value
            .try_extract_sequence::<DynMapValueType>()
            .map_err(failed)?
            .iter()
            .map(|map| map_json(map).map_err(failed))
            .collect::<Result<Vec<_>, _>>()
            .map(Output::Maps),
        DataType::Tensor(_) => tensor_output(&value, name).map(Output::Tensor),
    }
}

fn tensor_output(value: &DynValue, name: &str) -> Result<Tensor, PipelineError> {
    let failed = |err: ort::Error| PipelineError::Inference(format!("output `{name}`: {err}"));
    let ValueType::Tensor { ty, shape, .. } = value.dtype() else {
        return Err(PipelineError::Inference(format!(
            "output `{name}` is {}, not a tensor",
            value.dtype()
        )));
    };
    let shape = shape
        .iter()
        .map(|&dim| usize::try_from(dim).unwrap_or(0))
        .collect::<Vec<_>>();
    macro_rules! copied {
        ($ty:ty, $variant:ident) => {
            TensorData::$variant(
                value
                    .try_extract_tensor::<$ty>()
                    .map_err(failed)?
                    .1
                    .to_vec(),
            )
        };
    }
    let data = match ty {
        TensorElementType::Float32 => copied!(f32, Fp32),
        TensorElementType::Float64 => copied!(f64, Fp64),
        TensorElementType::Int64 => copied!(i64, Int64),
        TensorElementType::Int32 => copied!(i32, Int32),
        TensorElementType::Int16 => copied!(i16, Int16),
        TensorElementType::Int8 => copied!(i8, Int8),
        TensorElementType::Uint64 => copied!(u64, Uint64),
        TensorElementType::Uint32 => copied!(u32, Uint32),
        TensorElementType::Uint16 => copied!(u16, Uint16),
        TensorElementType::Uint8 => copied!(u8, Uint8),
        TensorElementType::Bool => copied!(bool, Bool),
        TensorElementType::Float16 => TensorData::Fp16(
            value
                .try_extract_tensor::<half::f16>()
                .map_err(failed)?
                .1
                .iter()
                .map(|half| half.to_bits())
                .collect(),
        ),
        TensorElementType::Bfloat16 => TensorData::Bf16(
            value
                .try_extract_tensor::<half::bf16>()
                .map_err(failed)?
                .1
                .iter()
                .map(|half| half.to_bits())
                .collect(),
        ),
        TensorElementType::String => TensorData::Bytes(
            value
                .try_extract_strings()
                .map_err(failed)?
                .1
                .into_iter()
                .map(String::into_bytes)
                .collect(),
        ),
        other => {
            return Err(PipelineError::Inference(format!(
                "output `{name}` has element type {other}, which the engine cannot return"
            )));
        }
    };
    Tensor::new(name, shape, data).map_err(|err| PipelineError::Inference(err.to_string()))
}

/// One map of a `seq(map(K, V))` output as a JSON object (keys as text, in ONNX Runtime's
/// order).
fn map_json(map: &ort::value::DynMap) -> ort::Result<Map<String, Value>> {
    let ValueType::Map { key, value } = map.dtype() else {
        return Err(ort::Error::new(format!("{} is not a map", map.dtype())));
    };
    macro_rules! entries {
        ($key:ty, $value:ty, $to_json:expr) => {
            map.try_extract_key_values::<$key, $value>()?
                .into_iter()
                .map(|(key, value)| (key.to_string(), $to_json(value)))
                .collect()
        };
    }
    let number = |value: f64| Number::from_f64(value).map_or(Value::Null, Value::Number);
    Ok(match (key, value) {
        (TensorElementType::String, TensorElementType::Float32) => {
            entries!(String, f32, inference_engine_core::tensor::f32_json)
        }
        (TensorElementType::Int64, TensorElementType::Float32) => {
            entries!(i64, f32, inference_engine_core::tensor::f32_json)
        }
        (TensorElementType::String, TensorElementType::Float64) => entries!(String, f64, number),
        (TensorElementType::Int64, TensorElementType::Float64) => entries!(i64, f64, number),
        (TensorElementType::String, TensorElementType::Int64) => entries!(String, i64, Value::from),
        (TensorElementType::Int64, TensorElementType::Int64) => entries!(i64, i64, Value::from),
        (key, value) => {
            return Err(ort::Error::new(format!(
                "maps from {key} to {value} have no JSON form in the engine"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_comes_from_the_file_name_the_library_links_to() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("libonnxruntime.so.1.31.1");
        std::fs::write(&real, b"").unwrap();
        let link = dir.path().join("libonnxruntime.so");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(file_version(&link).as_deref(), Some("1.31.1"));
        let plain = dir.path().join("libonnxruntime.so.custom");
        std::fs::write(&plain, b"").unwrap();
        assert_eq!(file_version(&plain), None);
        assert_eq!(file_version(&dir.path().join("missing.so")), None);
    }
}
