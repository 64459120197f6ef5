//! Image input for Llama 3.2 Vision: decoding a request's image within size limits and turning
//! it into the tiles, aspect-ratio id and mask the Mllama vision encoder takes.
//!
//! Matches the reference processor (transformers' `MllamaImageProcessor`) exactly on the
//! committed fixtures (`tests/mllama_preprocess.rs`), including Pillow's bilinear resampling.

mod decode;
pub mod mllama;
mod preprocess;
pub(crate) mod request;
mod resample;
pub(crate) mod serve;

pub use decode::{ImageLimits, decode_image};
pub use preprocess::{
    MllamaImageConfig, MllamaImageInput, TileGrid, best_tile_grid, preprocess_image,
    supported_tile_grids,
};
pub use resample::resize_bilinear;
