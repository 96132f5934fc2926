//! Export objects to Amazon S3 or any S3-compatible store, configured the way the AWS SDKs
//! are: environment first, then the shared config and credentials files.
//!
//! | Setting | Sources, first found wins |
//! |---|---|
//! | endpoint | `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, the profile's `endpoint_url` (none: AWS) |
//! | credentials | `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`), the profile in the credentials file, then in the config file |
//! | region | `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`, else `us-east-1` |
//! | profile | `AWS_PROFILE`, else `default` |
//! | files | `AWS_SHARED_CREDENTIALS_FILE` / `AWS_CONFIG_FILE`, else `~/.aws/credentials` / `~/.aws/config` |
//!
//! With a custom endpoint, requests use path-style addressing (`http://host/bucket/key`), which
//! every S3-compatible server accepts; plain `http://` endpoints are allowed.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, ObjectStore as _, ObjectStoreExt as _, PutOptions, PutPayload,
};

use crate::error::{ExportError, Result};
use crate::sink::{ObjectSink, ObjectSource};
use futures_util::TryStreamExt as _;

/// Where and as whom to reach S3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Settings {
    /// A custom endpoint (`http://127.0.0.1:9000`), or `None` for AWS itself.
    pub endpoint: Option<String>,
    /// The signing region.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
}

/// One profile's settings from the shared files (`key = value` lines of an INI section).
type Profile = HashMap<String, String>;

/// The section named `wanted` of an AWS shared file; in the config file a profile other than
/// `default` is the section `[profile NAME]`.
fn read_profile(path: &Path, profile: &str, config_file: bool) -> Profile {
    let Ok(text) = fs::read_to_string(path) else {
        return Profile::new();
    };
    let wanted = if config_file && profile != "default" {
        format!("profile {profile}")
    } else {
        profile.to_owned()
    };
    let mut inside = false;
    let mut settings = Profile::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = section.split_whitespace().collect::<Vec<_>>().join(" ") == wanted;
            continue;
        }
        if let (true, Some((key, value))) = (inside, line.split_once('=')) {
            settings.insert(key.trim().to_owned(), value.trim().to_owned());
        }
    }
    settings
}

impl S3Settings {
    /// The settings of this process's environment and shared files.
    pub fn from_environment() -> Result<S3Settings> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        S3Settings::resolve(&|name| std::env::var(name).ok(), home.as_deref())
    }

    /// Resolves the settings from `env` (a variable lookup) and the shared files under `home`.
    pub fn resolve(
        env: &dyn Fn(&str) -> Option<String>,
        home: Option<&Path>,
    ) -> Result<S3Settings> {
        let var = |name: &str| env(name).filter(|v| !v.is_empty());
        let profile_name = var("AWS_PROFILE").unwrap_or_else(|| "default".into());
        let shared_file = |variable: &str, default: &str| {
            var(variable)
                .map(PathBuf::from)
                .or_else(|| home.map(|h| h.join(".aws").join(default)))
        };
        let credentials_file = shared_file("AWS_SHARED_CREDENTIALS_FILE", "credentials")
            .map(|p| read_profile(&p, &profile_name, false))
            .unwrap_or_default();
        let config_file = shared_file("AWS_CONFIG_FILE", "config")
            .map(|p| read_profile(&p, &profile_name, true))
            .unwrap_or_default();
        let from_files = |key: &str| {
            credentials_file
                .get(key)
                .or_else(|| config_file.get(key))
                .cloned()
        };
        let (access_key_id, secret_access_key, session_token) =
            match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
                (Some(id), Some(secret)) => (id, secret, var("AWS_SESSION_TOKEN")),
                _ => match (
                    from_files("aws_access_key_id"),
                    from_files("aws_secret_access_key"),
                ) {
                    (Some(id), Some(secret)) => (id, secret, from_files("aws_session_token")),
                    _ => {
                        return Err(ExportError::S3Config(format!(
                            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                             or give profile {profile_name:?} keys in the shared credentials file"
                        )))
                    }
                },
            };
        Ok(S3Settings {
            endpoint: var("AWS_ENDPOINT_URL_S3")
                .or_else(|| var("AWS_ENDPOINT_URL"))
                .or_else(|| config_file.get("endpoint_url").cloned()),
            region: var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .or_else(|| config_file.get("region").cloned())
                .unwrap_or_else(|| "us-east-1".into()),
            access_key_id,
            secret_access_key,
            session_token,
        })
    }
}

/// A client for `bucket` as `settings` say; the caller adds what its use needs.
fn store_builder(bucket: &str, settings: &S3Settings) -> AmazonS3Builder {
    // reqwest is built without a TLS provider of its own: rustls uses the process default,
    // ring (the one the server's TLS already uses). A second install attempt is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(&settings.region)
        .with_access_key_id(&settings.access_key_id)
        .with_secret_access_key(&settings.secret_access_key);
    if let Some(token) = &settings.session_token {
        builder = builder.with_token(token);
    }
    if let Some(endpoint) = &settings.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    builder
}

/// The runtime a sink or source blocks on for each request.
fn blocking_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Objects in one S3 bucket.
///
/// `put` blocks on the sink's own runtime: call it from a plain thread, not from inside an
/// async task.
pub struct S3Sink {
    bucket: String,
    store: AmazonS3,
    runtime: tokio::runtime::Runtime,
}

impl S3Sink {
    /// A sink for `bucket`, encrypting objects as QLDB's `ObjectEncryptionType` says
    /// (`SSE_KMS` with `kms_key_arn`, `SSE_S3`, or `NO_ENCRYPTION`).
    pub fn new(
        bucket: &str,
        encryption: &str,
        kms_key_arn: Option<&str>,
        settings: &S3Settings,
    ) -> Result<S3Sink> {
        let mut builder = store_builder(bucket, settings);
        builder = match (encryption, kms_key_arn) {
            ("NO_ENCRYPTION", _) => builder,
            ("SSE_S3", _) => {
                let key: AmazonS3ConfigKey = "aws_server_side_encryption"
                    .parse()
                    .map_err(|e: object_store::Error| ExportError::S3Config(e.to_string()))?;
                builder.with_config(key, "AES256")
            }
            ("SSE_KMS", Some(key)) => builder.with_sse_kms_encryption(key),
            ("SSE_KMS", None) => {
                return Err(ExportError::InvalidInput(
                    "SSE_KMS needs a KmsKeyArn".into(),
                ))
            }
            (other, _) => {
                return Err(ExportError::InvalidInput(format!(
                    "unknown ObjectEncryptionType {other:?}"
                )))
            }
        };
        let store = builder
            .build()
            .map_err(|e| ExportError::S3Config(e.to_string()))?;
        Ok(S3Sink {
            bucket: bucket.to_owned(),
            store,
            runtime: blocking_runtime()?,
        })
    }
}

impl ObjectSink for S3Sink {
    fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<()> {
        let location = ObjectPath::parse(key).map_err(|e| ExportError::Write {
            key: key.to_owned(),
            detail: e.to_string(),
        })?;
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, content_type.to_owned().into());
        let options = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        self.runtime
            .block_on(
                self.store
                    .put_opts(&location, PutPayload::from(body), options),
            )
            .map_err(|e| ExportError::Write {
                key: key.to_owned(),
                detail: e.to_string(),
            })?;
        Ok(())
    }

    fn location(&self) -> String {
        format!("s3://{}", self.bucket)
    }
}

/// Reads the objects of one S3 bucket (an export to import).
///
/// Its calls block on the source's own runtime: call them from a plain thread, not from inside
/// an async task.
pub struct S3Source {
    bucket: String,
    store: AmazonS3,
    runtime: tokio::runtime::Runtime,
}

impl S3Source {
    /// A reader of `bucket`.
    pub fn new(bucket: &str, settings: &S3Settings) -> Result<S3Source> {
        let store = store_builder(bucket, settings)
            .build()
            .map_err(|e| ExportError::S3Config(e.to_string()))?;
        Ok(S3Source {
            bucket: bucket.to_owned(),
            store,
            runtime: blocking_runtime()?,
        })
    }
}

fn read_failed(key: &str, e: object_store::Error) -> ExportError {
    match e {
        object_store::Error::NotFound { .. } => ExportError::MissingObject(key.to_owned()),
        other => ExportError::Read {
            key: key.to_owned(),
            detail: other.to_string(),
        },
    }
}

impl ObjectSource for S3Source {
    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        // The listing is by whole path segments: list the prefix's folder, keep the matches.
        let folder = prefix.rsplit_once('/').map_or("", |(folder, _)| folder);
        let location = (!folder.is_empty())
            .then(|| ObjectPath::parse(folder))
            .transpose()
            .map_err(|e| ExportError::InvalidInput(e.to_string()))?;
        let listed: Vec<object_store::ObjectMeta> = self
            .runtime
            .block_on(self.store.list(location.as_ref()).try_collect())
            .map_err(|e| read_failed(prefix, e))?;
        let mut keys: Vec<String> = listed
            .into_iter()
            .map(|meta| meta.location.to_string())
            .filter(|key| key.starts_with(prefix))
            .collect();
        keys.sort();
        Ok(keys)
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let location = ObjectPath::parse(key).map_err(|e| ExportError::Read {
            key: key.to_owned(),
            detail: e.to_string(),
        })?;
        let bytes = self
            .runtime
            .block_on(async { self.store.get(&location).await?.bytes().await })
            .map_err(|e| read_failed(key, e))?;
        Ok(bytes.to_vec())
    }

    fn location(&self) -> String {
        format!("s3://{}", self.bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn environment_wins_and_the_s3_endpoint_beats_the_general_one() {
        let env = env_of(&[
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
            ("AWS_ENDPOINT_URL", "http://general:1"),
            ("AWS_ENDPOINT_URL_S3", "http://s3:2"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
        ]);
        let settings = S3Settings::resolve(&env, None).unwrap();
        assert_eq!(
            settings,
            S3Settings {
                endpoint: Some("http://s3:2".into()),
                region: "eu-west-1".into(),
                access_key_id: "AKID".into(),
                secret_access_key: "secret".into(),
                session_token: Some("token".into()),
            }
        );
    }

    #[test]
    fn shared_files_supply_the_named_profile() {
        let home = tempfile::tempdir().unwrap();
        let aws = home.path().join(".aws");
        fs::create_dir_all(&aws).unwrap();
        fs::write(
            aws.join("credentials"),
            "[default]\naws_access_key_id = D\naws_secret_access_key = d\n\
             [ci]\naws_access_key_id = C\naws_secret_access_key = c\naws_session_token = t\n",
        )
        .unwrap();
        fs::write(
            aws.join("config"),
            "[default]\nregion = us-west-2\n[profile ci]\nregion = ap-south-1\n\
             endpoint_url = http://minio:9000\n",
        )
        .unwrap();
        let default = S3Settings::resolve(&env_of(&[]), Some(home.path())).unwrap();
        assert_eq!(
            (default.access_key_id.as_str(), default.region.as_str()),
            ("D", "us-west-2")
        );
        assert_eq!(default.endpoint, None);
        let ci = S3Settings::resolve(&env_of(&[("AWS_PROFILE", "ci")]), Some(home.path())).unwrap();
        assert_eq!(ci.access_key_id, "C");
        assert_eq!(ci.session_token.as_deref(), Some("t"));
        assert_eq!(ci.region, "ap-south-1");
        assert_eq!(ci.endpoint.as_deref(), Some("http://minio:9000"));
    }

    #[test]
    fn missing_credentials_are_a_clear_error() {
        let error = S3Settings::resolve(&env_of(&[("AWS_REGION", "x")]), None).unwrap_err();
        assert!(error.to_string().contains("no AWS credentials"), "{error}");
    }
}
