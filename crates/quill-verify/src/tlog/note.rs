//! C2SP `signed-note`: a UTF-8 text, a blank line, then one line per signature,
//! `— <key name> base64(key id[4] ‖ signature)`, and the verifier keys that check them,
//! written `<name>+<hex key id>+base64(<type> ‖ <public key>)`.
//!
//! Two signature types are understood: Ed25519 (type 0x01), as logs sign checkpoints, and
//! C2SP `tlog-cosignature` `cosignature/v1` (type 0x04), as witnesses cosign them. Signatures
//! by unknown keys are skipped, as the spec requires; a signature by a known key that does
//! not verify fails the whole note.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest as _, Sha256};

use super::TlogError;

/// The signature type byte of plain Ed25519 note signatures.
pub const TYPE_ED25519: u8 = 0x01;
/// The signature type byte of `cosignature/v1` (Ed25519 over a timestamped message).
pub const TYPE_COSIGNATURE: u8 = 0x04;
/// The most signatures a note may carry before it is rejected (as the Go reference does).
pub const MAX_SIGNATURES: usize = 100;
/// The prefix of every signature line: an em dash and a space.
pub const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// The 4-byte key id: the first bytes of `SHA-256(name ‖ 0x0A ‖ type ‖ public key)`.
pub fn key_id(name: &str, key_type: u8, public_key: &[u8; 32]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', key_type]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// A key name is non-empty, valid for a note line, and holds no whitespace and no `+`.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// A public verifier key of either type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    /// The key name (a log's origin, or a witness's name).
    pub name: String,
    /// [`TYPE_ED25519`] or [`TYPE_COSIGNATURE`].
    pub key_type: u8,
    /// The Ed25519 public key.
    pub public_key: [u8; 32],
}

impl VerifierKey {
    /// A key from its parts; fails on a bad name or an unknown type.
    pub fn new(name: &str, key_type: u8, public_key: [u8; 32]) -> Result<VerifierKey, TlogError> {
        if !valid_key_name(name) {
            return Err(TlogError::BadKey(format!("invalid key name {name:?}")));
        }
        if key_type != TYPE_ED25519 && key_type != TYPE_COSIGNATURE {
            return Err(TlogError::BadKey(format!(
                "unsupported key type {key_type:#04x}"
            )));
        }
        VerifyingKey::from_bytes(&public_key)
            .map_err(|_| TlogError::BadKey("not an Ed25519 public key".into()))?;
        Ok(VerifierKey {
            name: name.to_owned(),
            key_type,
            public_key,
        })
    }

    /// Parses `name+hexkeyid+base64(type ‖ key)`, checking the key id against the key.
    pub fn parse(text: &str) -> Result<VerifierKey, TlogError> {
        let bad = |why: &str| TlogError::BadKey(format!("{why} in verifier key {text:?}"));
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected name+keyid+key"));
        };
        if id.len() != 8
            || !id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(bad("the key id is not 8 lowercase hex digits"));
        }
        let raw = STANDARD
            .decode(key)
            .map_err(|_| bad("the key is not base64"))?;
        let (&key_type, public_key) = raw.split_first().ok_or_else(|| bad("empty key"))?;
        let public_key: [u8; 32] = public_key
            .try_into()
            .map_err(|_| bad("the public key is not 32 bytes"))?;
        let parsed = VerifierKey::new(name, key_type, public_key)?;
        if hex4(&parsed.key_id()) != id {
            return Err(bad("the key id does not match the key"));
        }
        Ok(parsed)
    }

    /// This key's 4-byte id.
    pub fn key_id(&self) -> [u8; 4] {
        key_id(&self.name, self.key_type, &self.public_key)
    }

    /// Checks one signature (the bytes after the key id) over a note's text. Returns the
    /// cosignature's timestamp for a [`TYPE_COSIGNATURE`] key, `None` for a log signature.
    pub fn verify(&self, text: &str, signature: &[u8]) -> Result<Option<u64>, TlogError> {
        let key = VerifyingKey::from_bytes(&self.public_key)
            .map_err(|_| TlogError::BadKey("not an Ed25519 public key".into()))?;
        let invalid = || TlogError::InvalidSignature(self.name.clone());
        match self.key_type {
            TYPE_COSIGNATURE => {
                if signature.len() != 8 + 64 {
                    return Err(invalid());
                }
                let timestamp = u64::from_be_bytes(signature[..8].try_into().expect("8 bytes"));
                let signature = Signature::from_slice(&signature[8..]).map_err(|_| invalid())?;
                key.verify_strict(&cosignature_message(timestamp, text), &signature)
                    .map_err(|_| invalid())?;
                Ok(Some(timestamp))
            }
            _ => {
                let signature = Signature::from_slice(signature).map_err(|_| invalid())?;
                key.verify_strict(text.as_bytes(), &signature)
                    .map_err(|_| invalid())?;
                Ok(None)
            }
        }
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = Vec::with_capacity(33);
        raw.push(self.key_type);
        raw.extend_from_slice(&self.public_key);
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex4(&self.key_id()),
            STANDARD.encode(raw)
        )
    }
}

fn hex4(id: &[u8; 4]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The message a `cosignature/v1` signs: `cosignature/v1\ntime <unix seconds>\n` followed by
/// the checkpoint's note text.
pub fn cosignature_message(timestamp: u64, text: &str) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{text}").into_bytes()
}

/// One signature line of a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The key id.
    pub key_id: [u8; 4],
    /// The signature bytes after the key id.
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The line `— name base64(keyid ‖ signature)\n`.
    pub fn to_line(&self) -> String {
        let mut raw = self.key_id.to_vec();
        raw.extend_from_slice(&self.signature);
        format!("{SIGNATURE_PREFIX}{} {}\n", self.name, STANDARD.encode(raw))
    }

    /// Parses one signature line (without its newline).
    pub fn parse_line(line: &str) -> Result<NoteSignature, TlogError> {
        let bad = || TlogError::MalformedNote(format!("bad signature line {line:?}"));
        let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or_else(bad)?;
        let (name, encoded) = rest.split_once(' ').ok_or_else(bad)?;
        if !valid_key_name(name) {
            return Err(bad());
        }
        let raw = STANDARD.decode(encoded).map_err(|_| bad())?;
        if raw.len() < 5 {
            return Err(bad());
        }
        Ok(NoteSignature {
            name: name.to_owned(),
            key_id: raw[..4].try_into().expect("4 bytes"),
            signature: raw[4..].to_vec(),
        })
    }
}

/// A parsed (not yet verified) signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending in a newline.
    pub text: String,
    /// The signature lines, in order.
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Splits a note at its last blank line and parses its signature lines.
    pub fn parse(message: &str) -> Result<Note, TlogError> {
        let malformed = |why: &str| TlogError::MalformedNote(why.to_owned());
        if message.chars().any(|c| c.is_control() && c != '\n') {
            return Err(malformed("the note holds control characters"));
        }
        let split = message
            .rfind("\n\n")
            .ok_or_else(|| malformed("no blank line before the signatures"))?;
        let text = &message[..split + 1];
        let signature_block = &message[split + 2..];
        let lines = signature_block
            .strip_suffix('\n')
            .ok_or_else(|| malformed("the signatures do not end in a newline"))?;
        let mut signatures = Vec::new();
        for line in lines.split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(malformed("too many signatures"));
            }
            signatures.push(NoteSignature::parse_line(line)?);
        }
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note as text: the text, a blank line, the signature lines.
    pub fn to_text(&self) -> String {
        let mut out = format!("{}\n", self.text);
        for signature in &self.signatures {
            out.push_str(&signature.to_line());
        }
        out
    }

    /// Checks every signature made by one of `keys` (matched by name and key id) and returns
    /// the keys that signed, each with its cosignature timestamp if it has one. Signatures by
    /// other keys are ignored; one that names a known key but does not verify is an error.
    pub fn verify<'k>(
        &self,
        keys: &'k [VerifierKey],
    ) -> Result<Vec<(&'k VerifierKey, Option<u64>)>, TlogError> {
        let mut verified: Vec<(&'k VerifierKey, Option<u64>)> = Vec::new();
        for signature in &self.signatures {
            let Some(key) = keys
                .iter()
                .find(|k| k.name == signature.name && k.key_id() == signature.key_id)
            else {
                continue;
            };
            let timestamp = key.verify(&self.text, &signature.signature)?;
            if verified.iter().all(|(k, _)| *k != key) {
                verified.push((key, timestamp));
            }
        }
        Ok(verified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of golang.org/x/mod/sumdb/note (its package documentation and tests).
    const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const SIGNED: &str = "If you think cryptography is the answer to your problem,\n\
                          then you don't know what your problem is.\n\
                          \n\
                          \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn the_reference_key_parses_and_round_trips() {
        let key = VerifierKey::parse(VKEY).unwrap();
        assert_eq!(key.name, "PeterNeumann");
        assert_eq!(key.key_type, TYPE_ED25519);
        assert_eq!(key.key_id(), [0xc7, 0x4f, 0x20, 0xa3]);
        assert_eq!(key.to_string(), VKEY);
    }

    #[test]
    fn the_reference_note_verifies() {
        let key = VerifierKey::parse(VKEY).unwrap();
        let note = Note::parse(SIGNED).unwrap();
        assert_eq!(note.text, TEXT);
        assert_eq!(note.to_text(), SIGNED);
        let keys = [key];
        let verified = note.verify(&keys).unwrap();
        assert_eq!(verified, vec![(&keys[0], None)]);
    }

    #[test]
    fn a_changed_text_fails_and_unknown_keys_are_ignored() {
        let key = VerifierKey::parse(VKEY).unwrap();
        let tampered = SIGNED.replace("answer", "ANSWER");
        let note = Note::parse(&tampered).unwrap();
        assert_eq!(
            note.verify(std::slice::from_ref(&key)),
            Err(TlogError::InvalidSignature("PeterNeumann".into()))
        );
        let other = VerifierKey::new("Someone", TYPE_ED25519, key.public_key).unwrap();
        assert!(Note::parse(SIGNED)
            .unwrap()
            .verify(&[other])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn the_cosignature_spec_example_has_the_published_layout() {
        // C2SP tlog-cosignature's example: message construction and signature line layout.
        let body =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        assert_eq!(
            cosignature_message(1679315147, body),
            format!("cosignature/v1\ntime 1679315147\n{body}").into_bytes()
        );
        let line = "\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==";
        let signature = NoteSignature::parse_line(line).unwrap();
        assert_eq!(signature.name, "witness.example.com/w1");
        assert_eq!(signature.key_id, [0x8d, 0x66, 0xcf, 0x3f]);
        assert_eq!(signature.signature.len(), 72);
        assert_eq!(signature.signature[..8], 1679315147u64.to_be_bytes());
        assert_eq!(signature.to_line(), format!("{line}\n"));
    }

    #[test]
    fn cosignatures_verify_with_their_timestamp() {
        use ed25519_dalek::Signer as _;
        let secret = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let key = VerifierKey::new(
            "w.example",
            TYPE_COSIGNATURE,
            secret.verifying_key().to_bytes(),
        )
        .unwrap();
        let text = "log.example\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let mut signature = 42u64.to_be_bytes().to_vec();
        signature.extend_from_slice(&secret.sign(&cosignature_message(42, text)).to_bytes());
        assert_eq!(key.verify(text, &signature), Ok(Some(42)));
        signature[7] = 43;
        assert!(key.verify(text, &signature).is_err());
        // The same key as a plain Ed25519 key has another id: a cosignature is never
        // mistaken for a log signature.
        let plain = VerifierKey::new("w.example", TYPE_ED25519, key.public_key).unwrap();
        assert_ne!(plain.key_id(), key.key_id());
    }

    #[test]
    fn malformed_notes_and_keys_are_rejected() {
        for bad in [
            "no blank line\n\u{2014} a AAAAAAA=\n",
            "text\n\n",
            "text\n\n\u{2014} a AAAAAAA=",
            "text\n\n- a AAAAAAAAAA==\n",
            "text\n\n\u{2014} a AAAA\n",
            "text\n\n\u{2014} a+b AAAAAAAAAA==\n",
            "te\u{7}xt\n\n\u{2014} a AAAAAAAAAA==\n",
        ] {
            assert!(Note::parse(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3+Apc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3",
            "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        ] {
            assert!(VerifierKey::parse(bad).is_err(), "{bad:?}");
        }
    }
}
