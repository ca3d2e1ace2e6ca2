//! The QR code as inline SVG, drawn the same on the server and in the browser.
//!
//! The server encodes the code's text (the `qrcode` crate) into its modules, [`QrMatrix`], and
//! sends them in the status beside the text; both sides draw the SVG from the modules. So the
//! encoder is not compiled into the browser's WASM (docs/design.md, "A lighter page").

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// Quiet zone around the code, in modules.
const QUIET: usize = 4;

/// A QR code's modules: `width` rows of `width`, row by row, each hex digit of `dark` four
/// modules, its highest bit first, a set bit a dark module (the last digit padded with zeros).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QrMatrix {
    pub width: u32,
    pub dark: String,
}

impl QrMatrix {
    /// `text` as a QR code with error correction level M; `None` if it does not fit one.
    #[cfg(feature = "ssr")]
    pub fn encode(text: &str) -> Option<Self> {
        use qrcode::{Color, EcLevel, QrCode};
        let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).ok()?;
        let colors = code.to_colors();
        let mut dark = String::with_capacity(colors.len().div_ceil(4));
        for nibble in colors.chunks(4) {
            let mut value = 0u32;
            for (bit, color) in nibble.iter().enumerate() {
                if *color == Color::Dark {
                    value |= 8 >> bit;
                }
            }
            dark.push(char::from_digit(value, 16).expect("a nibble is one hex digit"));
        }
        Some(QrMatrix {
            width: u32::try_from(code.width()).ok()?,
            dark,
        })
    }

    /// Whether the module at `index` (row by row) is dark; `None` past the data or on a digit
    /// that is not hex.
    fn is_dark(&self, index: usize) -> Option<bool> {
        let digit = char::from(*self.dark.as_bytes().get(index / 4)?).to_digit(16)?;
        Some(digit & (8 >> (index % 4)) != 0)
    }

    /// One SVG path covering the dark modules, with a 4-module quiet zone, and the side of the
    /// whole image in modules; `None` for modules that do not make a QR code's square.
    pub fn svg_path(&self) -> Option<(usize, String)> {
        let width = usize::try_from(self.width).ok()?;
        if !(21..=177).contains(&width) || self.dark.len() != (width * width).div_ceil(4) {
            return None;
        }
        let mut path = String::with_capacity(width * width * 4);
        for index in 0..width * width {
            if self.is_dark(index)? {
                let x = index % width + QUIET;
                let y = index / width + QUIET;
                path.push_str(&format!("M{x} {y}h1v1h-1z"));
            }
        }
        Some((width + 2 * QUIET, path))
    }
}

#[component]
pub fn QrImage(code: String, matrix: Option<QrMatrix>, label: &'static str) -> impl IntoView {
    match matrix.as_ref().and_then(QrMatrix::svg_path) {
        Some((size, path)) => view! {
            <svg
                class="qr"
                role="img"
                aria-label=label
                data-testid="qr-code"
                data-qr-text=code
                viewBox=format!("0 0 {size} {size}")
                shape-rendering="crispEdges"
            >
                <rect width="100%" height="100%" fill="#fff" />
                <path d=path fill="#000" />
            </svg>
        }
        .into_any(),
        None => view! { <p class="error">"QR"</p> }.into_any(),
    }
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;
    use qrcode::{Color, EcLevel, QrCode};

    /// The path drawn straight from the encoder, module by module, as the page drew it before
    /// the modules travelled in the status.
    fn path_from_encoder(text: &str) -> (usize, String) {
        let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).expect("fits");
        let width = code.width();
        let mut path = String::new();
        for (index, color) in code.to_colors().iter().enumerate() {
            if *color == Color::Dark {
                let x = index % width + QUIET;
                let y = index / width + QUIET;
                path.push_str(&format!("M{x} {y}h1v1h-1z"));
            }
        }
        (width + 2 * QUIET, path)
    }

    #[test]
    fn the_modules_draw_the_same_code_the_encoder_makes() {
        let long = format!(
            "2@{},{},{},{}",
            "A".repeat(80),
            "b".repeat(44),
            "c".repeat(44),
            "d".repeat(44)
        );
        for text in [
            "http://127.0.0.1:3000/dev/phone?ref=abc",
            "x",
            long.as_str(),
        ] {
            let matrix = QrMatrix::encode(text).expect("fits");
            assert_eq!(
                matrix.svg_path().expect("draws"),
                path_from_encoder(text),
                "{text}"
            );
        }
        let (size, path) = QrMatrix::encode("http://127.0.0.1:3000/dev/phone?ref=abc")
            .and_then(|m| m.svg_path())
            .expect("draws");
        assert!(size >= 21 + 8);
        assert!(
            path.starts_with("M4 4h1v1h-1z"),
            "finder pattern starts the top-left corner"
        );
    }

    #[test]
    fn modules_that_are_not_a_qr_code_draw_nothing_and_do_not_panic() {
        let good = QrMatrix::encode("x").expect("fits");
        let bad = [
            QrMatrix {
                width: 0,
                dark: String::new(),
            },
            QrMatrix {
                width: 20,
                dark: "0".repeat(100),
            },
            QrMatrix {
                width: 178,
                dark: "0".repeat(178 * 178 / 4),
            },
            QrMatrix {
                width: good.width,
                dark: good.dark[1..].to_owned(),
            },
            QrMatrix {
                width: good.width,
                dark: format!("{}0", good.dark),
            },
            QrMatrix {
                width: good.width,
                dark: good.dark.replace('0', "g"),
            },
            QrMatrix {
                width: good.width,
                dark: good.dark.replacen(|c: char| c.is_ascii_hexdigit(), "й", 1),
            },
        ];
        for matrix in bad {
            assert_eq!(matrix.svg_path(), None, "{matrix:?}");
        }
    }

    #[test]
    fn text_too_long_for_a_qr_code_has_no_modules() {
        assert_eq!(QrMatrix::encode(&"x".repeat(5_000)), None);
    }
}
