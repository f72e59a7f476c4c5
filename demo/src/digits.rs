//! The UCI handwritten digits (8×8 images, 10 classes), embedded so that the example runs offline.

use std::io::Read;

use flate2::read::GzDecoder;
use ndarray::Array2;

/// `data/digits.csv.gz`: 1797 rows of 64 pixel values in `0..=16`, then the label. CC BY 4.0,
/// Alpaydin & Kaynak 1998 (see `data/README.md`).
const DIGITS_CSV_GZ: &[u8] = include_bytes!("../data/digits.csv.gz");

pub const CLASSES: usize = 10;
const PIXELS: usize = 64;

/// The images as rows of pixel intensities scaled to `[0, 1]`, and their labels.
pub fn load() -> (Array2<f32>, Vec<usize>) {
    let mut csv = String::new();
    GzDecoder::new(DIGITS_CSV_GZ).read_to_string(&mut csv).expect("the embedded digits file is valid gzip");
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for line in csv.lines() {
        let fields: Vec<u8> = line.split(',').map(|v| v.trim().parse().expect("an integer field")).collect();
        assert_eq!(fields.len(), PIXELS + 1, "a row of 64 pixels and a label");
        pixels.extend(fields[..PIXELS].iter().map(|&v| f32::from(v) / 16.0));
        labels.push(usize::from(fields[PIXELS]));
    }
    (Array2::from_shape_vec((labels.len(), PIXELS), pixels).expect("rows of 64 pixels"), labels)
}
