//! Media bytes: stored by SHA-256 in an [`ObjectStore`] (a directory of the data dir by default; any
//! `object_store` backend, such as S3, plugs in), and short-lived signed URLs to fetch them without credentials.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use sha2::{Digest, Sha256};

/// How long a signed content URL stays valid.
pub const CONTENT_URL_TTL_SECS: i64 = 300;

/// Where media bytes live.
#[derive(Debug, Clone)]
pub struct MediaStore {
    objects: Arc<dyn ObjectStore>,
}

/// Why media bytes could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum MediaStoreError {
    /// The content is not there (for example deleted from the bucket).
    #[error("the media content is missing")]
    Missing,
    /// The backend failed.
    #[error("media storage failed: {0}")]
    Backend(String),
}

impl MediaStore {
    /// Media in any object store.
    pub fn new(objects: Arc<dyn ObjectStore>) -> Self {
        Self { objects }
    }

    /// Media as files under `dir` (created if needed).
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn local(dir: &std::path::Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(std::io::Error::other)?;
        Ok(Self::new(Arc::new(store)))
    }

    /// Media in the object store a URL names: `file:///var/lib/palaver-media`, or (built with the `s3`
    /// feature) `s3://bucket/prefix`, configured by the usual `AWS_*` variables (`AWS_ENDPOINT` for
    /// S3-compatible servers such as MinIO).
    ///
    /// # Errors
    /// When the URL is malformed or names a backend this build does not include.
    pub fn from_url(raw: &str) -> Result<Self, String> {
        let url = url::Url::parse(raw).map_err(|e| format!("'{raw}' is not a URL: {e}"))?;
        let options: Vec<(String, String)> = std::env::vars()
            .filter(|(key, _)| key.starts_with("AWS_"))
            .map(|(key, value)| (key.to_ascii_lowercase(), value))
            .collect();
        if url.scheme() == "file" {
            std::fs::create_dir_all(url.path()).map_err(|e| format!("cannot create {}: {e}", url.path()))?;
        }
        let (store, prefix) = object_store::parse_url_opts(&url, options).map_err(|e| e.to_string())?;
        let store: Arc<dyn ObjectStore> = Arc::from(store);
        if prefix.as_ref().is_empty() {
            return Ok(Self::new(store));
        }
        Ok(Self::new(Arc::new(object_store::prefix::PrefixStore::new(store, prefix))))
    }

    fn path(sha256: &str) -> ObjectPath {
        ObjectPath::from(format!("sha256/{}/{sha256}", &sha256[..2.min(sha256.len())]))
    }

    /// Stores `content` (once per distinct content) and returns its hex SHA-256.
    ///
    /// # Errors
    /// When the backend fails.
    pub async fn put(&self, content: Bytes) -> Result<String, MediaStoreError> {
        let sha256 = hex(&Sha256::digest(&content));
        let path = Self::path(&sha256);
        match self.objects.head(&path).await {
            Ok(_) => return Ok(sha256),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(err) => return Err(MediaStoreError::Backend(err.to_string())),
        }
        self.objects
            .put(&path, PutPayload::from_bytes(content))
            .await
            .map_err(|e| MediaStoreError::Backend(e.to_string()))?;
        Ok(sha256)
    }

    /// The content stored under `sha256`.
    ///
    /// # Errors
    /// [`MediaStoreError::Missing`] when there is none.
    pub async fn get(&self, sha256: &str) -> Result<Bytes, MediaStoreError> {
        let found = self.objects.get(&Self::path(sha256)).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => MediaStoreError::Missing,
            other => MediaStoreError::Backend(other.to_string()),
        })?;
        found.bytes().await.map_err(|e| MediaStoreError::Backend(e.to_string()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn content_signature(auth_token: &str, media_sid: &str, expires: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{media_sid}:{expires}").as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// A URL that serves the content of `media_sid` without credentials until `now + CONTENT_URL_TTL_SECS`.
pub fn signed_content_url(origin: &str, auth_token: &str, media_sid: &str, now: time::OffsetDateTime) -> String {
    let expires = now.unix_timestamp() + CONTENT_URL_TTL_SECS;
    let signature = content_signature(auth_token, media_sid, expires);
    format!("{origin}/v1/MediaContent/{media_sid}?Expires={expires}&Signature={signature}")
}

/// Whether a signed content URL's parameters are genuine and unexpired.
pub fn content_url_valid(auth_token: &str, media_sid: &str, expires: i64, signature: &str, now: i64) -> bool {
    expires >= now && crate::auth::same_secret(&content_signature(auth_token, media_sid, expires), signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_urls_expire_and_resist_tampering() {
        let now = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let url = signed_content_url("http://h", "token", "ME1", now);
        let query = url.split_once('?').unwrap().1;
        let expires: i64 = query.split('&').next().unwrap().trim_start_matches("Expires=").parse().unwrap();
        let signature = query.split("Signature=").nth(1).unwrap();
        assert!(content_url_valid("token", "ME1", expires, signature, now.unix_timestamp()));
        assert!(!content_url_valid("token", "ME2", expires, signature, now.unix_timestamp()));
        assert!(!content_url_valid("other", "ME1", expires, signature, now.unix_timestamp()));
        assert!(!content_url_valid("token", "ME1", expires, signature, expires + 1));
    }

    #[tokio::test]
    async fn content_is_stored_once_by_hash() {
        let dir = tempfile_dir();
        let store = MediaStore::local(&dir).unwrap();
        let a = store.put(Bytes::from_static(b"hello")).await.unwrap();
        let b = store.put(Bytes::from_static(b"hello")).await.unwrap();
        assert_eq!(a, b);
        assert_eq!(a, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(store.get(&a).await.unwrap(), Bytes::from_static(b"hello"));
        assert!(matches!(store.get(&"0".repeat(64)).await, Err(MediaStoreError::Missing)));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn stores_open_from_urls() {
        let dir = tempfile_dir();
        let store = MediaStore::from_url(&format!("file://{}/nested", dir.display())).unwrap();
        let sha = store.put(Bytes::from_static(b"by url")).await.unwrap();
        assert!(dir.join("nested/sha256").join(&sha[..2]).join(&sha).exists());
        assert_eq!(store.get(&sha).await.unwrap(), Bytes::from_static(b"by url"));
        assert!(MediaStore::from_url("not a url").is_err());
        assert!(MediaStore::from_url("gs://bucket/x").is_err(), "backends not built in are refused");
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("palaver-media-{}", palaver_api::sid::MediaSid::generate()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
