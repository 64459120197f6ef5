//! The `InferenceProvider` implementation: request preparation on the async side, generation
//! on the engine thread.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use candle_core::Device;
use futures::StreamExt;
use llama_stack_core::{Error, Result};
use llama_stack_inference::{ChatStream, CompletionStream, InferenceProvider};
use llama_stack_llama3::{ModelFamily, Piece, RenderOptions, render_chat, render_completion};
use llama_stack_stack::ProviderContext;
use llama_stack_types::{
    ChatCompletionRequest, CompletionRequest, HealthInfo, HealthStatus, Model, ModelType,
    SamplingParams, ToolDefinition,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::config::CandleConfig;
use crate::engine::{self, EngineHandle, EngineLimits, Job};
use crate::llama::KvDtype;
use crate::llama::load::DenseWeights;
use crate::model_files::{self, ModelFiles};
use crate::sampling::SamplingSettings;
use crate::stream::{TextAssembler, pump_chat, pump_completion};
use crate::vision::request::{has_images, load_images};
use crate::vision::serve::JobImages;

/// How many events may wait between the engine and the HTTP stream.
const EVENT_BUFFER: usize = 64;

pub struct CandleProvider {
    config: CandleConfig,
    device: Device,
    precision: DenseWeights,
    kv_dtype: KvDtype,
    /// One engine per model location, shared by every model id served from it.
    engines: tokio::sync::Mutex<HashMap<PathBuf, Arc<LazyEngine>>>,
    /// Engines by provider model id.
    models: RwLock<HashMap<String, Arc<LazyEngine>>>,
}

/// An engine that starts on first use (or at registration with `preload`), exactly once.
struct LazyEngine {
    files: std::sync::Mutex<Option<ModelFiles>>,
    handle: tokio::sync::OnceCell<EngineHandle>,
}

impl CandleProvider {
    pub fn new(config: CandleConfig, _context: ProviderContext) -> Result<Self> {
        let device = crate::engine_load::parse_device(&config.device)?;
        let precision = crate::engine_load::parse_dtype(&config.dtype);
        let kv_dtype = crate::engine_load::parse_kv_dtype(&config.kv_cache_dtype)?;
        Ok(CandleProvider {
            config,
            device,
            precision,
            kv_dtype,
            engines: tokio::sync::Mutex::new(HashMap::new()),
            models: RwLock::new(HashMap::new()),
        })
    }

    fn limits(&self) -> EngineLimits {
        EngineLimits {
            max_queue: self.config.max_queue,
            max_batch: self.config.max_batch_size,
            max_seq_len: self.config.max_seq_len,
            prefix_cache_slots: self.config.prefix_cache_slots,
            kv_cache_dtype: self.kv_dtype,
            speculative: self.config.speculative,
            weight_quant: self
                .config
                .quantize
                .as_deref()
                .and_then(crate::config::weight_quant),
        }
    }

    /// Starts the engine of `lazy` unless it runs already.
    async fn start(&self, lazy: &LazyEngine) -> Result<EngineHandle> {
        lazy.handle
            .get_or_try_init(|| async {
                let files = lazy
                    .files
                    .lock()
                    .map_err(|_| Error::internal("model file table lock poisoned"))?
                    .take()
                    .ok_or_else(|| {
                        Error::internal("the model's files were taken by a failed load")
                    })?;
                let (device, precision, limits) =
                    (self.device.clone(), self.precision, self.limits());
                let started = std::time::Instant::now();
                let location = files.location.clone();
                let format = files.weights.format();
                let quantize = self.config.quantize.clone();
                let (files, started_engine) = tokio::task::spawn_blocking(move || {
                    let mut progress = crate::progress::LoadProgress::new(&files.location);
                    let started =
                        engine::start(&files, device, precision, limits, &mut |done, total| {
                            progress.update(done, total)
                        });
                    (files, started)
                })
                .await
                .map_err(|e| Error::internal(format!("model loading task failed: {e}")))?;
                let handle = match started_engine {
                    Ok(handle) => handle,
                    Err(err) => {
                        // Kept for the next request, which then reports the same cause
                        // rather than a missing model.
                        if let Ok(mut slot) = lazy.files.lock() {
                            *slot = Some(files);
                        }
                        return Err(err);
                    }
                };
                // What a conversation costs in memory, so operators can size `max_seq_len`
                // and `max_batch_size` against RAM.
                let kv_mib_per_1k = (handle.kv_bytes_per_token * 1024) as f64 / (1 << 20) as f64;
                tracing::info!(
                    model = %location.display(),
                    format,
                    quantize = quantize.as_deref().unwrap_or("none"),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    kv_cache_dtype = handle.kv_cache_dtype.name(),
                    kv_cache_mib_per_1k_tokens = format!("{kv_mib_per_1k:.1}"),
                    kv_cache_mib_at_max_seq_len = format!("{:.0}", kv_mib_per_1k * handle.max_seq_len as f64 / 1024.0),
                    max_seq_len = handle.max_seq_len,
                    "Loaded model"
                );
                Ok(handle)
            })
            .await
            .cloned()
    }

    async fn engine_for(&self, model: &Model) -> Result<EngineHandle> {
        let lazy = self
            .models
            .read()
            .map_err(|_| Error::internal("model table lock poisoned"))?
            .get(&model.provider_resource_id)
            .cloned()
            .ok_or_else(|| {
                Error::internal(format!(
                    "model '{}' is registered but not known to inline::candle",
                    model.identifier
                ))
            })?;
        self.start(&lazy).await
    }

    fn max_tokens(
        &self,
        params: &SamplingParams,
        prompt_len: usize,
        engine: &EngineHandle,
    ) -> Result<usize> {
        if prompt_len >= engine.max_seq_len {
            return Err(Error::invalid(format!(
                "the prompt has {prompt_len} tokens; this model accepts at most {} tokens of prompt and completion together",
                engine.max_seq_len
            )));
        }
        let asked = match params.max_tokens {
            Some(0) | None => self.config.default_max_tokens as usize,
            Some(n) => n as usize,
        };
        Ok(asked.min(engine.max_seq_len - prompt_len))
    }

    /// Tokenizes the prompt and queues the generation; returns the engine's event stream and
    /// the detokenizer for it, with the prompt length.
    fn start_job(
        &self,
        engine: &EngineHandle,
        pieces: &[Piece],
        params: &SamplingParams,
        response_format: Option<&serde_json::Value>,
        logprobs: Option<usize>,
        images: Option<Arc<JobImages>>,
    ) -> Result<(
        mpsc::UnboundedReceiver<engine::EngineEvent>,
        TextAssembler,
        usize,
    )> {
        // Tokenizing megabytes takes seconds of CPU; a prompt with more bytes than the context
        // could hold even at the longest token is refused without it.
        let prompt_bytes: usize = pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.len(),
                Piece::Special(_) => 0,
            })
            .sum();
        if prompt_bytes > engine.max_seq_len.saturating_mul(engine.max_token_bytes) {
            return Err(Error::invalid(format!(
                "the prompt is {prompt_bytes} bytes, more than this model's {} tokens of context can hold; shorten it",
                engine.max_seq_len
            )));
        }
        let mut prompt = engine.prompt.encode(pieces)?;
        if let Some(vision) = &engine.vision {
            // The prompt format's `<|image|>` is a reserved id of the text vocabulary; the
            // vision checkpoints embed images at an id of their own.
            let mut shown = 0;
            for token in prompt
                .iter_mut()
                .filter(|t| **t == llama_stack_llama3::IMAGE)
            {
                *token = vision.image_token;
                shown += 1;
            }
            let given = images.as_ref().map_or(0, |i| i.inputs.len());
            if shown != given {
                return Err(Error::invalid(format!(
                    "the prompt shows {shown} of the request's {given} images; images are read \
                     from user, assistant and tool messages, and a system message that the \
                     tool prompt replaces drops its image"
                )));
            }
        }
        let prompt_len = prompt.len();
        let sampling = SamplingSettings::from_strategy(
            &params.strategy,
            params.repetition_penalty,
            params.seed,
        )
        .map_err(Error::invalid)?;
        let max_tokens = self.max_tokens(params, prompt_len, engine)?;
        let constraint = engine.constraint(response_format, self.config.json_whitespace)?;
        let (events, receiver) = mpsc::unbounded_channel();
        engine.submit(Job {
            prompt,
            max_tokens,
            sampling,
            logprobs,
            constraint,
            images,
            events,
        })?;
        let text = TextAssembler::new(
            engine.tokenizer.clone(),
            params.stop.clone().unwrap_or_default(),
        );
        Ok((receiver, text, prompt_len))
    }
}

#[async_trait]
impl InferenceProvider for CandleProvider {
    async fn register_model(&self, model: &Model) -> Result<()> {
        if model.model_type == ModelType::Embedding {
            return Err(Error::unsupported(format!(
                "inline::candle serves Llama language models only; '{}' is registered as an embedding model",
                model.identifier
            )));
        }
        let location = model_files::locate(
            self.config.model_path.as_deref(),
            self.config.hf_cache_dir.as_deref(),
            &model.provider_resource_id,
        )?;
        let lazy = {
            let mut engines = self.engines.lock().await;
            match engines.get(&location) {
                Some(lazy) => lazy.clone(),
                None => {
                    let inspect_at = location.clone();
                    let files =
                        tokio::task::spawn_blocking(move || model_files::inspect(&inspect_at))
                            .await
                            .map_err(|e| {
                                Error::internal(format!("model inspection task failed: {e}"))
                            })??;
                    if let Some(quantize) = &self.config.quantize
                        && !matches!(files.weights, model_files::Weights::Mllama { .. })
                    {
                        return Err(Error::invalid(format!(
                            "quantize: {quantize} applies to Llama 3.2 Vision checkpoints, and \
                             {} holds a text-only model; serve a GGUF file of the type wanted \
                             (llama.cpp's `llama-quantize` writes one) and leave quantize unset",
                            location.display()
                        )));
                    }
                    let lazy = Arc::new(LazyEngine {
                        files: std::sync::Mutex::new(Some(files)),
                        handle: tokio::sync::OnceCell::new(),
                    });
                    engines.insert(location.clone(), lazy.clone());
                    lazy
                }
            }
        };
        if self.config.preload {
            self.start(&lazy).await?;
        }
        self.models
            .write()
            .map_err(|_| Error::internal("model table lock poisoned"))?
            .insert(model.provider_resource_id.clone(), lazy);
        Ok(())
    }

    async fn chat_completion(
        &self,
        model: &Model,
        request: ChatCompletionRequest,
    ) -> Result<ChatStream> {
        let engine = self.engine_for(model).await?;
        let tool_config = request
            .tool_config
            .clone()
            .unwrap_or(llama_stack_types::ToolConfig {
                tool_choice: None,
                tool_prompt_format: None,
                system_message_behavior: None,
            });
        let tools = request.tools.clone().unwrap_or_default();
        let options = RenderOptions {
            family: ModelFamily::from_model_id(&model.provider_resource_id),
            tools: tools.clone(),
            tool_choice: tool_config.tool_choice.or(request.tool_choice.clone()),
            tool_prompt_format: tool_config
                .tool_prompt_format
                .or(request.tool_prompt_format.clone()),
            system_message_behavior: tool_config.system_message_behavior,
            today: chrono::Local::now().date_naive(),
        };
        let forced_call = match (&request.response_format, options.tool_choice.as_deref()) {
            (None, Some(choice)) if choice != "auto" && choice != "none" && !tools.is_empty() => {
                Some(tool_call_format(&tools, choice))
            }
            _ => None,
        };
        let images = match (&engine.vision, has_images(&request.messages)) {
            (_, false) => None,
            (None, true) => {
                return Err(Error::invalid(format!(
                    "model '{}' reads text only and cannot take images; serve a Llama 3.2 \
                     Vision checkpoint for image input, or send text",
                    model.identifier
                )));
            }
            (Some(vision), true) => {
                let inputs =
                    load_images(&request.messages, &vision.image_config, &self.config.images)
                        .await?;
                let mut images = JobImages::new(inputs);
                let serving = vision.serving.clone();
                let images = tokio::task::spawn_blocking(move || {
                    serving.encode(&mut images).map(|()| images)
                })
                .await
                .map_err(|e| Error::internal(format!("image encoding task failed: {e}")))?
                .map_err(|e| Error::internal(format!("cannot encode the image: {e}")))?;
                Some(Arc::new(images))
            }
        };
        let pieces = render_chat(&request.messages, &options);
        let params = request.sampling_params.clone().unwrap_or_default();
        let (events, text, prompt_len) = self.start_job(
            &engine,
            &pieces,
            &params,
            request.response_format.as_ref().or(forced_call.as_ref()),
            request
                .logprobs
                .as_ref()
                .map(|l| l.top_k.unwrap_or(0) as usize),
            images,
        )?;
        let (out, chunks) = mpsc::channel(EVENT_BUFFER);
        tokio::spawn(pump_chat(events, out, text, tools, prompt_len));
        Ok(ReceiverStream::new(chunks).boxed())
    }

    async fn completion(
        &self,
        model: &Model,
        request: CompletionRequest,
    ) -> Result<CompletionStream> {
        let engine = self.engine_for(model).await?;
        let pieces = render_completion(&request.content.as_text("\n"));
        let params = request.sampling_params.clone().unwrap_or_default();
        let (events, text, prompt_len) = self.start_job(
            &engine,
            &pieces,
            &params,
            request.response_format.as_ref(),
            request
                .logprobs
                .as_ref()
                .map(|l| l.top_k.unwrap_or(0) as usize),
            None,
        )?;
        let (out, chunks) = mpsc::channel(EVENT_BUFFER);
        tokio::spawn(pump_completion(events, out, text, prompt_len));
        Ok(ReceiverStream::new(chunks).boxed())
    }

    async fn health(&self) -> HealthInfo {
        let loaded = self
            .engines
            .try_lock()
            .map(|e| e.values().filter(|l| l.handle.initialized()).count())
            .unwrap_or(0);
        HealthInfo {
            status: HealthStatus::Ok,
            message: Some(format!("{loaded} model(s) loaded")),
        }
    }
}

/// The `response_format` that makes the reply a call of one of `tools` in the JSON custom-tool
/// format (`{"type": "function", "name": ..., "parameters": {...}}`), for `tool_choice`
/// `required` or a tool's name: the model must call a tool, so it is kept from writing anything
/// else.
fn tool_call_format(tools: &[ToolDefinition], choice: &str) -> serde_json::Value {
    let json_type = |param_type: &str| match param_type {
        "str" | "string" => serde_json::json!({"type": "string"}),
        "int" | "integer" => serde_json::json!({"type": "integer"}),
        "float" | "number" => serde_json::json!({"type": "number"}),
        "bool" | "boolean" => serde_json::json!({"type": "boolean"}),
        "list" | "array" => serde_json::json!({"type": "array"}),
        "dict" | "object" => serde_json::json!({"type": "object"}),
        _ => serde_json::json!({}),
    };
    let calls: Vec<serde_json::Value> = tools
        .iter()
        .filter(|t| choice == "required" || t.tool_name == choice)
        .map(|tool| {
            let params = tool.parameters.clone().unwrap_or_default();
            let properties: serde_json::Map<String, serde_json::Value> = params
                .iter()
                .map(|(name, p)| (name.clone(), json_type(&p.param_type)))
                .collect();
            let required: Vec<&String> = params
                .iter()
                .filter(|(_, p)| p.required)
                .map(|(name, _)| name)
                .collect();
            serde_json::json!({
                "type": "object",
                "properties": {
                    "type": {"const": "function"},
                    "name": {"const": tool.tool_name},
                    "parameters": {
                        "type": "object",
                        "properties": properties,
                        "required": required,
                        "additionalProperties": false,
                    },
                },
                "required": ["type", "name", "parameters"],
                "additionalProperties": false,
            })
        })
        .collect();
    serde_json::json!({"type": "json_schema", "json_schema": {"anyOf": calls}})
}
