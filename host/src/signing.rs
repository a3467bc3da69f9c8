//! Optional ed25519 signatures on components. With trusted keys configured,
//! a component loads (from the folder or the admin API) only if `NAME.sig`
//! (hex of a 64-byte ed25519 signature over the `.wasm` bytes) verifies with
//! one of them.

use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// The keys components must be signed with; empty = signatures not required.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys(Vec<VerifyingKey>);

impl TrustedKeys {
    /// Parses hex-encoded 32-byte public keys.
    pub fn parse(hex_keys: &[String]) -> Result<Self, String> {
        hex_keys
            .iter()
            .map(|h| {
                let bytes: [u8; 32] = hex::decode(h.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| format!("trusted key `{h}` is not 64 hex digits"))?;
                VerifyingKey::from_bytes(&bytes).map_err(|e| format!("trusted key `{h}`: {e}"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks a hex signature over `bytes`.
    pub fn verify(&self, bytes: &[u8], signature_hex: Option<&str>) -> Result<(), String> {
        if self.0.is_empty() {
            return Ok(());
        }
        let Some(sig_hex) = signature_hex else {
            return Err("unsigned: a trusted key is configured, so a signature is required".into());
        };
        let sig: [u8; 64] = hex::decode(sig_hex.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("the signature is not 128 hex digits")?;
        let sig = Signature::from_bytes(&sig);
        if self.0.iter().any(|k| k.verify(bytes, &sig).is_ok()) {
            Ok(())
        } else {
            Err("the signature does not match any trusted key".into())
        }
    }

    /// Reads `NAME.sig` beside `wasm_path` (if any) and verifies.
    pub fn verify_file(&self, wasm_path: &Path, bytes: &[u8]) -> Result<(), String> {
        if self.0.is_empty() {
            return Ok(());
        }
        let sig = std::fs::read_to_string(wasm_path.with_extension("sig")).ok();
        self.verify(bytes, sig.as_deref())
    }
}

/// A new key pair as hex: (secret, public).
pub fn generate() -> std::io::Result<(String, String)> {
    use std::io::Read;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
    let key = SigningKey::from_bytes(&seed);
    Ok((
        hex::encode(seed),
        hex::encode(key.verifying_key().to_bytes()),
    ))
}

/// Signs `bytes` with a hex secret key; returns the hex signature.
pub fn sign(secret_hex: &str, bytes: &[u8]) -> Result<String, String> {
    let seed: [u8; 32] = hex::decode(secret_hex.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the secret key is not 64 hex digits")?;
    Ok(hex::encode(
        SigningKey::from_bytes(&seed).sign(bytes).to_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let (secret, public) = generate().unwrap();
        let keys = TrustedKeys::parse(&[public]).unwrap();
        let sig = sign(&secret, b"component").unwrap();
        assert!(keys.verify(b"component", Some(&sig)).is_ok());
        assert!(keys.verify(b"componenT", Some(&sig)).is_err());
        assert!(keys.verify(b"component", None).is_err());
        assert!(keys.verify(b"component", Some("zz")).is_err());
        let (other, _) = generate().unwrap();
        assert!(
            keys.verify(b"component", Some(&sign(&other, b"component").unwrap()))
                .is_err()
        );
        assert!(TrustedKeys::default().verify(b"x", None).is_ok());
    }
}
