//! Ed25519 note keys: a log signs checkpoints with one, a witness cosigns with one.
//!
//! A key file holds one line in the private key format of `golang.org/x/mod/sumdb/note`
//! (which C2SP tools share): `PRIVATE+KEY+<name>+<hex key id>+base64(0x01 ‖ 32-byte seed)`.
//! The same seed gives the log's verifier key (type 0x01) or, for a witness, its
//! `cosignature/v1` verifier key (type 0x04).

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use quill_verify::tlog::note::{
    cosignature_message, key_id, valid_key_name, TYPE_COSIGNATURE, TYPE_ED25519,
};
use quill_verify::tlog::{NoteSignature, VerifierKey};
use rand::RngCore as _;

const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";

/// Why a key could not be read, made or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key text is not a valid private key.
    #[error("invalid private key: {0}")]
    Invalid(String),
    /// The key file cannot be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The key file can be read by other users.
    #[error("key file {0} is readable by group or others: chmod 600 it")]
    TooOpen(String),
}

/// A named Ed25519 signing key.
pub struct NoteSigner {
    name: String,
    secret: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A key from a name and a 32-byte seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<NoteSigner, KeyError> {
        if !valid_key_name(name) {
            return Err(KeyError::Invalid(format!("invalid key name {name:?}")));
        }
        Ok(NoteSigner {
            name: name.to_owned(),
            secret: SigningKey::from_bytes(&seed),
        })
    }

    /// A fresh random key from the operating system's generator.
    pub fn generate(name: &str) -> Result<NoteSigner, KeyError> {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        NoteSigner::from_seed(name, seed)
    }

    /// Parses `PRIVATE+KEY+name+hexid+base64(0x01 ‖ seed)`, checking the key id.
    pub fn parse(text: &str) -> Result<NoteSigner, KeyError> {
        let invalid = |why: &str| KeyError::Invalid(why.to_owned());
        let rest = text
            .trim_end()
            .strip_prefix(PRIVATE_PREFIX)
            .ok_or_else(|| invalid("it does not start with PRIVATE+KEY+"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(encoded)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("expected PRIVATE+KEY+name+keyid+key"));
        };
        let raw = STANDARD
            .decode(encoded)
            .map_err(|_| invalid("the key is not base64"))?;
        let seed: [u8; 32] = match raw.split_first() {
            Some((&TYPE_ED25519, seed)) => seed
                .try_into()
                .map_err(|_| invalid("the seed is not 32 bytes"))?,
            _ => return Err(invalid("not an Ed25519 key")),
        };
        let signer = NoteSigner::from_seed(name, seed)?;
        if hex::encode(signer.verifier_key().key_id()) != id {
            return Err(invalid("the key id does not match the key"));
        }
        Ok(signer)
    }

    /// The same key under another name (a log signs each ledger's origin with one key).
    pub fn with_name(&self, name: &str) -> Result<NoteSigner, KeyError> {
        NoteSigner::from_seed(name, self.secret.to_bytes())
    }

    /// Reads the key at `path`, or creates it (mode 0600) if there is none yet.
    pub fn read_or_create(path: &Path, name: &str) -> Result<NoteSigner, KeyError> {
        match NoteSigner::read_file(path) {
            Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                let signer = NoteSigner::generate(name)?;
                match signer.write_new_file(path) {
                    Ok(()) => Ok(signer),
                    // Another process created it first: use theirs.
                    Err(KeyError::Io { source, .. })
                        if source.kind() == io::ErrorKind::AlreadyExists =>
                    {
                        NoteSigner::read_file(path)
                    }
                    Err(e) => Err(e),
                }
            }
            other => other,
        }
    }

    /// The private key text (keep it secret).
    pub fn to_private_text(&self) -> String {
        let mut raw = vec![TYPE_ED25519];
        raw.extend_from_slice(self.secret.as_bytes());
        format!(
            "{PRIVATE_PREFIX}{}+{}+{}",
            self.name,
            hex::encode(self.verifier_key().key_id()),
            STANDARD.encode(raw)
        )
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn public_key(&self) -> [u8; 32] {
        self.secret.verifying_key().to_bytes()
    }

    /// The verifier key of this key's plain Ed25519 signatures (a log's key).
    pub fn verifier_key(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key_type: TYPE_ED25519,
            public_key: self.public_key(),
        }
    }

    /// The verifier key of this key's `cosignature/v1` signatures (a witness's key).
    pub fn cosigner_key(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key_type: TYPE_COSIGNATURE,
            public_key: self.public_key(),
        }
    }

    /// Signs a note's text as a log: an Ed25519 signature over the text.
    pub fn sign(&self, text: &str) -> NoteSignature {
        NoteSignature {
            name: self.name.clone(),
            key_id: key_id(&self.name, TYPE_ED25519, &self.public_key()),
            signature: self.secret.sign(text.as_bytes()).to_bytes().to_vec(),
        }
    }

    /// Cosigns a checkpoint's text as a witness at `timestamp` (Unix seconds).
    pub fn cosign(&self, text: &str, timestamp: u64) -> NoteSignature {
        let mut signature = timestamp.to_be_bytes().to_vec();
        signature.extend_from_slice(
            &self
                .secret
                .sign(&cosignature_message(timestamp, text))
                .to_bytes(),
        );
        NoteSignature {
            name: self.name.clone(),
            key_id: key_id(&self.name, TYPE_COSIGNATURE, &self.public_key()),
            signature,
        }
    }

    /// Reads a key file, refusing one that group or others can read.
    pub fn read_file(path: &Path) -> Result<NoteSigner, KeyError> {
        let io_error = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let metadata = fs::metadata(path).map_err(io_error)?;
        if metadata.permissions().mode() & 0o077 != 0 {
            return Err(KeyError::TooOpen(path.display().to_string()));
        }
        NoteSigner::parse(&fs::read_to_string(path).map_err(io_error)?)
    }

    /// Writes this key to a new file readable by its owner only; never overwrites a file.
    pub fn write_new_file(&self, path: &Path) -> Result<(), KeyError> {
        let io_error = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io_error)?;
        file.write_all(format!("{}\n", self.to_private_text()).as_bytes())
            .map_err(io_error)?;
        file.sync_all().map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use quill_verify::tlog::Note;

    use super::*;

    // The example of golang.org/x/mod/sumdb/note: signing is deterministic, so the signed note
    // must come out byte for byte.
    const SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const SIGNED: &str = "If you think cryptography is the answer to your problem,\n\
                          then you don't know what your problem is.\n\
                          \n\
                          \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn the_reference_signer_reproduces_the_published_note() {
        let signer = NoteSigner::parse(SKEY).unwrap();
        assert_eq!(signer.to_private_text(), SKEY);
        assert_eq!(signer.verifier_key().to_string(), VKEY);
        let note = Note {
            text: TEXT.to_owned(),
            signatures: vec![signer.sign(TEXT)],
        };
        assert_eq!(note.to_text(), SIGNED);
    }

    #[test]
    fn cosignatures_verify_against_the_cosigner_key() {
        let signer = NoteSigner::generate("witness.example").unwrap();
        let text = "log.example\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let note = Note {
            text: text.to_owned(),
            signatures: vec![signer.cosign(text, 1679315147)],
        };
        let keys = [signer.cosigner_key()];
        assert_eq!(
            note.verify(&keys).unwrap(),
            vec![(&keys[0], Some(1679315147))]
        );
        // A cosignature is not a log signature.
        assert!(note.verify(&[signer.verifier_key()]).unwrap().is_empty());
        let parsed = VerifierKey::parse(&signer.cosigner_key().to_string()).unwrap();
        assert_eq!(parsed, signer.cosigner_key());
    }

    #[test]
    fn bad_key_texts_and_open_files_are_refused() {
        for bad in [
            "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
            "PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
            "PRIVATE+KEY+PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PRIVATE+KEY+PeterNeumann",
        ] {
            assert!(NoteSigner::parse(bad).is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let signer = NoteSigner::generate("w.example").unwrap();
        signer.write_new_file(&path).unwrap();
        assert!(signer.write_new_file(&path).is_err(), "never overwrites");
        let read = NoteSigner::read_file(&path).unwrap();
        assert_eq!(read.verifier_key(), signer.verifier_key());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            NoteSigner::read_file(&path),
            Err(KeyError::TooOpen(_))
        ));
    }
}
