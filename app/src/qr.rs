//! The QR code as inline SVG, rendered the same on the server and in the browser.

use leptos::prelude::*;
use qrcode::{Color, EcLevel, QrCode};

/// One SVG path covering the dark modules, with a 4-module quiet zone; `None` if the text does not
/// fit a QR code.
pub fn qr_svg_path(text: &str) -> Option<(usize, String)> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).ok()?;
    let width = code.width();
    let quiet = 4;
    let mut path = String::with_capacity(width * width * 4);
    for (index, color) in code.to_colors().iter().enumerate() {
        if *color == Color::Dark {
            let x = index % width + quiet;
            let y = index / width + quiet;
            path.push_str(&format!("M{x} {y}h1v1h-1z"));
        }
    }
    Some((width + 2 * quiet, path))
}

#[component]
pub fn QrImage(code: String, label: &'static str) -> impl IntoView {
    match qr_svg_path(&code) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_path_has_quiet_zone_and_modules() {
        let (size, path) = qr_svg_path("http://127.0.0.1:3000/dev/phone?ref=abc").expect("fits");
        assert!(size >= 21 + 8);
        assert!(
            path.starts_with("M4 4h1v1h-1z"),
            "finder pattern starts the top-left corner"
        );
    }
}
