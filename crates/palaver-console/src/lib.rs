//! The web console's built files, embedded in the binary.
//!
//! The sources are TypeScript in `console/` at the repository root; `build.rs` bundles them with npm and
//! esbuild into a flat folder (`index.html` plus content-hashed `assets/…`), and this crate embeds that
//! folder. It knows nothing of HTTP: `palaver-server`'s `console` module serves these files at `/console`.

/// One built file.
#[derive(Debug)]
pub struct Asset {
    /// Its path below `/console/` (`index.html`, `assets/app-HASH.js`, …).
    pub path: &'static str,
    /// Its media type.
    pub content_type: &'static str,
    /// A quoted strong validator of its content.
    pub etag: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
}

impl Asset {
    /// Whether the file's name carries a hash of its content, so it can be cached forever.
    pub fn is_immutable(&self) -> bool {
        self.path.starts_with("assets/")
    }
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The built file at `path` (below `/console/`), if there is one.
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

/// The page every console URL starts from.
pub fn index() -> &'static Asset {
    asset("index.html").expect("build.rs refuses a console without index.html")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_refers_only_to_embedded_hashed_assets() {
        let page = std::str::from_utf8(index().bytes).expect("index.html is UTF-8");
        let referenced: Vec<&str> = page.split("/console/").skip(1).filter_map(|rest| rest.split('"').next()).collect();
        assert!(referenced.iter().any(|path| path.ends_with(".js")), "the page loads a script: {page}");
        for path in referenced {
            let embedded = asset(path).unwrap_or_else(|| panic!("index.html refers to {path}, which is not embedded"));
            assert!(embedded.is_immutable(), "{path} is cached forever, so its name must carry its hash");
        }
        assert!(!page.contains("<script>") && !page.contains("style="), "no inline code: the CSP forbids it");
    }
}
