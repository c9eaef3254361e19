//! `[preprocess.image]`: encoded images (PNG, JPEG, WebP) in, the graph's FP32 image tensor
//! out.
//!
//! Each image is checked from its header before anything is decoded: a file that claims more
//! pixels than the model's `max_pixels` is refused without allocating for it (decompression
//! bombs), and the decoder runs under the same limits in case the header lies. Then it is
//! converted to the model's channels, resized (`shorter_side` + centre crop, or `exact`),
//! scaled to [0, 1], normalised with `mean` / `std` and laid out as NCHW or NHWC. Everything
//! runs on the executor thread of the request.

use std::io::Cursor;

use base64::Engine as _;
use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageFormat, ImageReader, Limits};
use inference_engine_core::pipeline::PipelineError;
use inference_engine_core::source::IMAGE_FIELD;
use inference_engine_core::tensor::{Tensor, TensorData};
use serde_json::Value;

use crate::examples::Examples;
use crate::manifest::{Channels, DEFAULT_MAX_PIXELS, ImageLayout, ImageManifest, Resize};

/// A model's image preprocessing.
#[derive(Debug)]
pub(crate) struct ImagePreprocessor {
    settings: ImageManifest,
    max_pixels: u64,
    /// The graph input the images fill.
    input: String,
}

impl ImagePreprocessor {
    pub(crate) fn new(settings: &ImageManifest, input: &str) -> Self {
        Self {
            max_pixels: settings.max_pixels.unwrap_or(DEFAULT_MAX_PIXELS),
            settings: settings.clone(),
            input: input.to_owned(),
        }
    }

    /// The request's images, decoded; `None` when `data` holds no image (numbers: the client
    /// sent the tensor itself). Forms: `{"image_base64": ".."}` or a list of them; the base64
    /// text may be a `data:image/...;base64,` URL.
    pub(crate) fn read(&self, data: &Value) -> Option<Result<Examples, PipelineError>> {
        match data {
            Value::Object(fields) if fields.contains_key(IMAGE_FIELD) => {
                Some(self.read_json(std::slice::from_ref(data), true))
            }
            Value::Array(items)
                if items
                    .first()
                    .is_some_and(|item| item.get(IMAGE_FIELD).is_some()) =>
            {
                Some(self.read_json(items, false))
            }
            _ => None,
        }
    }

    fn read_json(&self, items: &[Value], single: bool) -> Result<Examples, PipelineError> {
        let mut images = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let at = |message: String| {
                if single {
                    PipelineError::InvalidInput(message)
                } else {
                    PipelineError::InvalidInput(format!("image {index}: {message}"))
                }
            };
            let Some(Value::String(text)) = item.get(IMAGE_FIELD) else {
                return Err(at(format!(
                    "expected {{\"{IMAGE_FIELD}\": \"<base64 of a PNG, JPEG or WebP file>\"}}"
                )));
            };
            let encoded = text
                .split_once(";base64,")
                .filter(|(scheme, _)| scheme.starts_with("data:"))
                .map_or(text.as_str(), |(_, encoded)| encoded);
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|err| at(format!("`{IMAGE_FIELD}` is not valid base64: {err}")))?;
            images.push(self.pixels(&bytes).map_err(at)?);
        }
        self.examples(images, single)
    }

    /// The protocol form: a `BYTES` tensor `[n]` of encoded image files.
    pub(crate) fn read_tensor(&self, tensor: &Tensor) -> Result<Examples, PipelineError> {
        let TensorData::Bytes(files) = &tensor.data else {
            return Err(PipelineError::InvalidInput(format!(
                "input `{}` is {}; images go in a BYTES tensor of encoded files",
                tensor.name,
                tensor.datatype()
            )));
        };
        if tensor.shape.len() != 1 {
            return Err(PipelineError::InvalidInput(format!(
                "input `{}` has shape {:?}; send [n] encoded images",
                tensor.name, tensor.shape
            )));
        }
        let images = files
            .iter()
            .enumerate()
            .map(|(index, bytes)| {
                self.pixels(bytes).map_err(|message| {
                    PipelineError::InvalidInput(format!("image {index}: {message}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.examples(images, false)
    }

    /// A raw request body: one encoded image.
    pub(crate) fn read_bytes(&self, bytes: &[u8]) -> Result<Examples, PipelineError> {
        let image = self.pixels(bytes).map_err(PipelineError::InvalidInput)?;
        self.examples(vec![image], true)
    }

    fn examples(&self, images: Vec<Vec<f32>>, single: bool) -> Result<Examples, PipelineError> {
        if images.is_empty() {
            return Err(PipelineError::InvalidInput(
                "no images; send at least one".into(),
            ));
        }
        let settings = &self.settings;
        let (width, height) = (settings.width as usize, settings.height as usize);
        let channels = settings.channels.count();
        let rows = images.len();
        let shape = match settings.layout {
            ImageLayout::Nchw => vec![rows, channels, height, width],
            ImageLayout::Nhwc => vec![rows, height, width, channels],
        };
        let values = images.into_iter().flatten().collect();
        let tensor = Tensor::new(self.input.clone(), shape, TensorData::Fp32(values))
            .map_err(|err| PipelineError::Inference(err.to_string()))?;
        Ok(Examples {
            tensors: vec![tensor],
            rows,
            single,
        })
    }

    /// One encoded image → its normalised pixels in the model's layout. Errors are sentences
    /// for the client.
    fn pixels(&self, bytes: &[u8]) -> Result<Vec<f32>, String> {
        let image = self.decode(bytes)?;
        let settings = &self.settings;
        let image = match settings.channels {
            Channels::Grayscale => DynamicImage::ImageLuma8(image.to_luma8()),
            Channels::Rgb => DynamicImage::ImageRgb8(image.to_rgb8()),
        };
        let image = resize(image, settings);
        let (width, height) = (settings.width as usize, settings.height as usize);
        let channels = settings.channels.count();
        let raw = image.as_bytes();
        let per_channel = |values: &Option<Vec<f32>>, channel: usize, default: f32| {
            values.as_ref().map_or(default, |values| {
                values
                    .get(channel)
                    .or(values.first())
                    .copied()
                    .unwrap_or(default)
            })
        };
        let mean = (0..channels)
            .map(|channel| per_channel(&settings.mean, channel, 0.0))
            .collect::<Vec<_>>();
        let std = (0..channels)
            .map(|channel| per_channel(&settings.std, channel, 1.0))
            .collect::<Vec<_>>();
        let mut values = vec![0.0f32; width * height * channels];
        for (pixel, samples) in raw.chunks_exact(channels).enumerate() {
            for (channel, &sample) in samples.iter().enumerate() {
                let value = (f32::from(sample) / 255.0 - mean[channel]) / std[channel];
                let index = match settings.layout {
                    ImageLayout::Nchw => channel * width * height + pixel,
                    ImageLayout::Nhwc => pixel * channels + channel,
                };
                values[index] = value;
            }
        }
        Ok(values)
    }

    fn decode<'a>(&self, bytes: &'a [u8]) -> Result<DynamicImage, String> {
        if bytes.is_empty() {
            return Err("the image is empty (0 bytes)".into());
        }
        // A reader over the request's own bytes (no copy); the header is read twice (format,
        // then size) because reading the size consumes its reader.
        let reader = |bytes: &'a [u8]| -> Result<ImageReader<Cursor<&'a [u8]>>, String> {
            let reader = ImageReader::new(Cursor::new(bytes))
                .with_guessed_format()
                .map_err(|err| format!("cannot read the image: {err}"))?;
            match reader.format() {
                Some(ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP) => Ok(reader),
                Some(other) => Err(format!(
                    "{other:?} images are not supported; send PNG, JPEG or WebP"
                )),
                None => Err("not a PNG, JPEG or WebP image".into()),
            }
        };
        let format = reader(bytes)?.format().map_or("image", format_name);
        let (width, height) = reader(bytes)?
            .into_dimensions()
            .map_err(|err| format!("cannot read the {format} header: {err}"))?;
        let pixels = u64::from(width) * u64::from(height);
        if pixels == 0 {
            return Err(format!(
                "the {format} is {width}×{height}: it has no pixels"
            ));
        }
        if pixels > self.max_pixels {
            return Err(format!(
                "the {format} is {width}×{height} = {pixels} pixels; this model takes at most {} \
                 (max_pixels)",
                self.max_pixels
            ));
        }
        let mut limits = Limits::default();
        limits.max_image_width = Some(width);
        limits.max_image_height = Some(height);
        // RGBA at 16 bits per sample, the most any of the three decoders asks for.
        limits.max_alloc = Some(pixels.saturating_mul(8).saturating_add(1 << 20));
        let mut decoder = reader(bytes)?;
        decoder.limits(limits);
        decoder
            .decode()
            .map_err(|err| format!("cannot decode the {format}: {err}"))
    }
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Png => "PNG",
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::WebP => "WebP",
        _ => "image",
    }
}

/// Scales `image` to the model's size: `exact`, or the shorter side first (keeping the aspect
/// ratio) and then the centre crop. Bilinear (triangle) filtering, as torchvision's default.
fn resize(image: DynamicImage, settings: &ImageManifest) -> DynamicImage {
    let (width, height) = (settings.width, settings.height);
    if image.width() == width && image.height() == height {
        return image;
    }
    match settings.resize {
        Resize::Exact => image.resize_exact(width, height, FilterType::Triangle),
        Resize::ShorterSide => {
            let scale = f64::max(
                f64::from(width) / f64::from(image.width()),
                f64::from(height) / f64::from(image.height()),
            );
            let scaled = |side: u32, target: u32| {
                // At least the target, so the crop always fits.
                ((f64::from(side) * scale).round() as u32).max(target)
            };
            let (scaled_width, scaled_height) =
                (scaled(image.width(), width), scaled(image.height(), height));
            let resized = image.resize_exact(scaled_width, scaled_height, FilterType::Triangle);
            let left = (scaled_width - width) / 2;
            let top = (scaled_height - height) / 2;
            DynamicImage::from(imageops::crop_imm(&resized, left, top, width, height).to_image())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Crop;

    fn settings(width: u32, height: u32, channels: Channels, layout: ImageLayout) -> ImageManifest {
        ImageManifest {
            width,
            height,
            resize: Resize::ShorterSide,
            crop: Crop::Center,
            mean: None,
            std: None,
            layout,
            channels,
            max_pixels: None,
        }
    }

    fn png(image: &DynamicImage) -> Vec<u8> {
        let mut bytes = Cursor::new(Vec::new());
        image
            .write_to(&mut bytes, ImageFormat::Png)
            .unwrap_or_else(|err| panic!("encode: {err}"));
        bytes.into_inner()
    }

    #[test]
    fn channels_are_laid_out_as_the_graph_takes_them() {
        // One red pixel: NCHW puts 1.0 in the first plane, NHWC in the first channel slot.
        let red =
            DynamicImage::ImageRgb8(image::RgbImage::from_pixel(1, 1, image::Rgb([255, 0, 0])));
        let bytes = png(&red);
        let nchw = ImagePreprocessor::new(&settings(1, 1, Channels::Rgb, ImageLayout::Nchw), "x");
        assert_eq!(nchw.pixels(&bytes), Ok(vec![1.0, 0.0, 0.0]));
        let mut normalised = settings(2, 1, Channels::Rgb, ImageLayout::Nhwc);
        normalised.resize = Resize::Exact;
        normalised.mean = Some(vec![0.5]);
        normalised.std = Some(vec![0.5, 1.0, 0.25]);
        let nhwc = ImagePreprocessor::new(&normalised, "x");
        assert_eq!(
            nhwc.pixels(&bytes),
            Ok(vec![1.0, -0.5, -2.0, 1.0, -0.5, -2.0])
        );
    }

    #[test]
    fn shorter_side_resize_keeps_the_centre() {
        // 4×2: left half black, right half white; scaled to 2×1 then cropped to 1×1 from the
        // middle, where both halves meet.
        let mut wide = image::GrayImage::new(40, 20);
        for (x, _, pixel) in wide.enumerate_pixels_mut() {
            *pixel = image::Luma([if x < 20 { 0 } else { 255 }]);
        }
        let wide = DynamicImage::ImageLuma8(wide);
        let resized = resize(
            wide,
            &settings(10, 10, Channels::Grayscale, ImageLayout::Nchw),
        );
        assert_eq!((resized.width(), resized.height()), (10, 10));
        let gray = resized.to_luma8();
        assert_eq!(gray.get_pixel(0, 5).0, [0]);
        assert_eq!(gray.get_pixel(9, 5).0, [255]);
    }

    #[test]
    fn bad_images_are_named_before_decoding() {
        let preprocessor =
            ImagePreprocessor::new(&settings(8, 8, Channels::Grayscale, ImageLayout::Nchw), "x");
        assert_eq!(
            preprocessor.pixels(b""),
            Err("the image is empty (0 bytes)".into())
        );
        assert_eq!(
            preprocessor.pixels(b"hello, not an image"),
            Err("not a PNG, JPEG or WebP image".into())
        );
        let bytes = png(&DynamicImage::new_luma8(8, 8));
        let truncated = preprocessor.pixels(&bytes[..bytes.len() / 2]);
        assert!(
            truncated
                .as_ref()
                .is_err_and(|message| message.starts_with("cannot decode the PNG")),
            "{truncated:?}"
        );
        let mut small = settings(8, 8, Channels::Grayscale, ImageLayout::Nchw);
        small.max_pixels = Some(63);
        let bounded = ImagePreprocessor::new(&small, "x");
        assert_eq!(
            bounded.pixels(&bytes),
            Err("the PNG is 8×8 = 64 pixels; this model takes at most 63 (max_pixels)".into())
        );
    }
}
