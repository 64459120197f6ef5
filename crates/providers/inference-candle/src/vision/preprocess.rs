//! Llama 3.2 Vision (Mllama) image preprocessing: the tensors the vision encoder takes for one
//! image, computed as the reference processor computes them.
//!
//! The image is resized, keeping its aspect ratio, to fit the tile arrangement (up to four
//! 560 × 560 tiles) that needs the least scaling; padded with black at the bottom and right to
//! fill the arrangement; rescaled to [0, 1] and normalised with the CLIP mean and std; and cut
//! into tiles in row-major order. The arrangement's index among the supported ones is the
//! aspect-ratio id the model embeds; the mask marks which of the tile slots hold real tiles.

use image::RgbImage;

use super::resample::resize_bilinear;

/// How images are cut into tiles and normalised; the defaults are Llama 3.2 Vision's.
#[derive(Debug, Clone, PartialEq)]
pub struct MllamaImageConfig {
    /// Side of one square tile in pixels.
    pub tile_size: u32,
    /// Most tiles one image may be cut into; every arrangement of rows × columns with at most
    /// this many tiles is supported.
    pub max_image_tiles: usize,
    /// Per-channel (R, G, B) mean subtracted after rescaling to [0, 1].
    pub image_mean: [f32; 3],
    /// Per-channel (R, G, B) standard deviation divided by after subtracting the mean.
    pub image_std: [f32; 3],
}

impl Default for MllamaImageConfig {
    // The published decimals, kept verbatim so they can be checked against the model's
    // preprocessor config; they round to the same f32 values the reference computes with.
    #[allow(clippy::excessive_precision)]
    fn default() -> Self {
        MllamaImageConfig {
            tile_size: 560,
            max_image_tiles: 4,
            // CLIP's statistics, which the vision encoder was trained with.
            image_mean: [0.481_454_66, 0.457_827_5, 0.408_210_73],
            image_std: [0.268_629_54, 0.261_302_58, 0.275_777_11],
        }
    }
}

/// A tile arrangement: how many tiles high and wide the padded image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileGrid {
    pub rows: usize,
    pub columns: usize,
}

impl TileGrid {
    pub fn tiles(self) -> usize {
        self.rows * self.columns
    }
}

/// One image ready for the vision encoder.
#[derive(Debug, Clone, PartialEq)]
pub struct MllamaImageInput {
    /// Normalised pixels, row-major with shape [`Self::shape`]: `[max_image_tiles, 3,
    /// tile_size, tile_size]`. Tile slots past `num_tiles` hold zeros.
    pub pixel_values: Vec<f32>,
    pub shape: [usize; 4],
    /// The arrangement's 1-based position in [`supported_tile_grids`]; 0 is left for "no
    /// image" by the model's embedding table.
    pub aspect_ratio_id: u32,
    /// One entry per tile slot: 1 for the slots that hold a tile of this image.
    pub aspect_ratio_mask: Vec<u8>,
    pub num_tiles: usize,
    pub grid: TileGrid,
}

/// Every arrangement with at most `max_tiles` tiles, in the order that defines aspect-ratio ids:
/// by row count, then by column count.
pub fn supported_tile_grids(max_tiles: usize) -> Vec<TileGrid> {
    let mut grids = Vec::new();
    for rows in 1..=max_tiles {
        for columns in 1..=max_tiles {
            if rows * columns <= max_tiles {
                grids.push(TileGrid { rows, columns });
            }
        }
    }
    grids
}

/// The arrangement whose canvas fits the image with the least scaling: the smallest upscale if
/// any canvas is at least as large as the image in its limiting direction, else the mildest
/// downscale; ties go to the smallest canvas.
pub fn best_tile_grid(width: u32, height: u32, config: &MllamaImageConfig) -> TileGrid {
    let tile = f64::from(config.tile_size);
    let grids = supported_tile_grids(config.max_image_tiles);
    // Computed in f64 and compared exactly, as the reference does, so ties break the same way.
    let scales: Vec<f64> = grids
        .iter()
        .map(|g| {
            let by_height = g.rows as f64 * tile / f64::from(height);
            let by_width = g.columns as f64 * tile / f64::from(width);
            if by_width > by_height {
                by_height
            } else {
                by_width
            }
        })
        .collect();
    let upscale = scales
        .iter()
        .copied()
        .filter(|&s| s >= 1.0)
        .reduce(f64::min);
    let chosen = upscale.unwrap_or_else(|| {
        scales
            .iter()
            .copied()
            .filter(|&s| s < 1.0)
            .reduce(f64::max)
            .expect("every scale is either >= 1 or < 1")
    });
    grids
        .iter()
        .zip(&scales)
        .filter(|(_, s)| **s == chosen)
        .map(|(g, _)| *g)
        .min_by_key(|g| g.tiles())
        .expect("the chosen scale came from one of the grids")
}

/// The size, within a `grid` canvas, the image is resized to: it keeps its aspect ratio and is
/// never made smaller than one tile in a direction unless that is the other side's limit.
fn fit_to_canvas(width: u32, height: u32, grid: TileGrid, tile_size: u32) -> (u32, u32) {
    let canvas_w = grid.columns as u32 * tile_size;
    let canvas_h = grid.rows as u32 * tile_size;
    let target_w = width.max(tile_size).min(canvas_w);
    let target_h = height.max(tile_size).min(canvas_h);
    let scale_w = f64::from(target_w) / f64::from(width);
    let scale_h = f64::from(target_h) / f64::from(height);
    if scale_w < scale_h {
        let h = ((f64::from(height) * scale_w).floor() as u32).max(1);
        (target_w, h.min(target_h))
    } else {
        let w = ((f64::from(width) * scale_h).floor() as u32).max(1);
        (w.min(target_w), target_h)
    }
}

/// Resizes, pads, normalises and tiles one decoded image.
pub fn preprocess_image(image: &RgbImage, config: &MllamaImageConfig) -> MllamaImageInput {
    let (width, height) = image.dimensions();
    let grid = best_tile_grid(width, height, config);
    let (new_w, new_h) = fit_to_canvas(width, height, grid, config.tile_size);
    let resized = resize_bilinear(image, new_w, new_h);

    let tile = config.tile_size as usize;
    let slots = config.max_image_tiles;
    let tile_len = 3 * tile * tile;
    let mut pixel_values = vec![0f32; slots * tile_len];
    // Padding is black before normalisation, so it becomes -mean/std, not zero.
    let normalise = |c: usize, value: u8| -> f32 {
        // Rescaled in f64 and rounded to f32 before normalising in f32: the reference's order
        // of operations, which makes the two agree exactly.
        let scaled = (f64::from(value) * (1.0 / 255.0)) as f32;
        (scaled - config.image_mean[c]) / config.image_std[c]
    };
    let pad: [f32; 3] = std::array::from_fn(|c| normalise(c, 0));
    let (new_w, new_h) = (new_w as usize, new_h as usize);
    let raw = resized.as_raw();
    for tile_row in 0..grid.rows {
        for tile_col in 0..grid.columns {
            let slot = tile_row * grid.columns + tile_col;
            let out = &mut pixel_values[slot * tile_len..(slot + 1) * tile_len];
            for y in 0..tile {
                let src_y = tile_row * tile + y;
                for x in 0..tile {
                    let src_x = tile_col * tile + x;
                    let inside = src_y < new_h && src_x < new_w;
                    for c in 0..3 {
                        out[(c * tile + y) * tile + x] = if inside {
                            normalise(c, raw[(src_y * new_w + src_x) * 3 + c])
                        } else {
                            pad[c]
                        };
                    }
                }
            }
        }
    }

    let grids = supported_tile_grids(config.max_image_tiles);
    let index = grids
        .iter()
        .position(|g| *g == grid)
        .expect("grid is supported");
    let num_tiles = grid.tiles();
    let mut aspect_ratio_mask = vec![0u8; slots];
    aspect_ratio_mask[..num_tiles].fill(1);
    MllamaImageInput {
        pixel_values,
        shape: [slots, 3, tile, tile],
        aspect_ratio_id: index as u32 + 1,
        aspect_ratio_mask,
        num_tiles,
        grid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_tiles_allow_eight_arrangements() {
        let grids: Vec<(usize, usize)> = supported_tile_grids(4)
            .iter()
            .map(|g| (g.rows, g.columns))
            .collect();
        assert_eq!(
            grids,
            [
                (1, 1),
                (1, 2),
                (1, 3),
                (1, 4),
                (2, 1),
                (2, 2),
                (3, 1),
                (4, 1)
            ]
        );
    }

    #[test]
    fn grid_follows_the_aspect_ratio() {
        let config = MllamaImageConfig::default();
        let grid = |w, h| {
            let g = best_tile_grid(w, h, &config);
            (g.rows, g.columns)
        };
        assert_eq!(grid(560, 560), (1, 1));
        assert_eq!(grid(100, 80), (1, 1));
        // The smallest upscale wins over a larger canvas...
        assert_eq!(grid(1500, 300), (1, 3));
        assert_eq!(grid(300, 1500), (3, 1));
        // ...and with none possible, the mildest downscale.
        assert_eq!(grid(2400, 300), (1, 4));
        assert_eq!(grid(1000, 1000), (2, 2));
    }

    #[test]
    fn small_images_are_scaled_up_to_a_tile() {
        let grid = TileGrid {
            rows: 1,
            columns: 1,
        };
        assert_eq!(fit_to_canvas(300, 200, grid, 560), (560, 373));
        assert_eq!(fit_to_canvas(200, 300, grid, 560), (373, 560));
    }
}
