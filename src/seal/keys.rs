//! Key material: file keys, passphrase (Argon2id) and X25519 key wrapping,
//! identities and public keys in their text forms.

use std::fmt;
use std::str::FromStr;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::Aes256Gcm;
use bech32::{Bech32, Hrp};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use super::kdf::passphrase_kek;
use super::{KdfParams, RandomSource};
use crate::error::{Error, Result};

/// Bytes of a file key, a KEK, an X25519 key.
pub const KEY_LEN: usize = 32;
/// A wrapped file key: 32 bytes of ciphertext and a 16-byte tag.
pub const WRAPPED_LEN: usize = KEY_LEN + 16;
/// Argon2id salt length.
pub const SALT_LEN: usize = 16;

const HRP_PUBLIC: &str = "coffer";
const HRP_SECRET: &str = "coffer-secret-key-";
const AAD_PASSPHRASE: &[u8] = b"coffer/v1 passphrase";
const AAD_X25519: &[u8] = b"coffer/v1 x25519";
const INFO_X25519: &[u8] = b"coffer/v1 x25519";

/// The random 32-byte key that encrypts one sealed file. Zeroized on drop;
/// neither `Debug` nor `Clone`.
pub struct FileKey(pub(crate) Zeroizing<[u8; KEY_LEN]>);

impl FileKey {
    pub(crate) fn generate(rng: &mut dyn RandomSource) -> Result<Self> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill(key.as_mut())?;
        Ok(Self(key))
    }

    /// HKDF-SHA256(ikm = file key, salt, info) → 32 bytes.
    pub(crate) fn derive(&self, salt: &[u8], info: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
        hkdf32(salt, self.0.as_ref(), info)
    }
}

pub(crate) fn hkdf32(salt: &[u8], ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = Hkdf::<Sha256>::new(Some(salt), ikm).expand(info, out.as_mut());
    out
}

/// Encrypts the file key under a KEK with AES-256-GCM. The nonce is zero:
/// every KEK is used exactly once (fresh salt or fresh ephemeral key).
fn wrap(kek: &[u8; KEY_LEN], aad: &[u8], key: &FileKey) -> Result<[u8; WRAPPED_LEN]> {
    let cipher = Aes256Gcm::new(kek.into());
    let mut out = [0u8; WRAPPED_LEN];
    out[..KEY_LEN].copy_from_slice(key.0.as_ref());
    let tag = cipher.encrypt_inout_detached(&Default::default(), aad, (&mut out[..KEY_LEN]).into()).map_err(|_| Error::invalid("key wrapping failed"))?;
    out[KEY_LEN..].copy_from_slice(&tag);
    Ok(out)
}

fn unwrap(kek: &[u8; KEY_LEN], aad: &[u8], wrapped: &[u8; WRAPPED_LEN]) -> Option<FileKey> {
    let cipher = Aes256Gcm::new(kek.into());
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&wrapped[..KEY_LEN]);
    let tag = aes_gcm::Tag::try_from(&wrapped[KEY_LEN..]).ok()?;
    cipher.decrypt_inout_detached(&Default::default(), aad, key.as_mut().into(), &tag).ok()?;
    Some(FileKey(key))
}

pub(crate) fn wrap_passphrase(passphrase: &[u8], salt: &[u8; SALT_LEN], kdf: &KdfParams, key: &FileKey) -> Result<[u8; WRAPPED_LEN]> {
    wrap(&*passphrase_kek(passphrase, salt, kdf)?, AAD_PASSPHRASE, key)
}

pub(crate) fn unwrap_passphrase(passphrase: &[u8], salt: &[u8; SALT_LEN], kdf: &KdfParams, wrapped: &[u8; WRAPPED_LEN]) -> Result<Option<FileKey>> {
    Ok(unwrap(&*passphrase_kek(passphrase, salt, kdf)?, AAD_PASSPHRASE, wrapped))
}

fn x25519_kek(shared: &[u8; KEY_LEN], ephemeral: &[u8; KEY_LEN], recipient: &[u8; KEY_LEN]) -> Zeroizing<[u8; KEY_LEN]> {
    let mut salt = [0u8; 2 * KEY_LEN];
    salt[..KEY_LEN].copy_from_slice(ephemeral);
    salt[KEY_LEN..].copy_from_slice(recipient);
    hkdf32(&salt, shared, INFO_X25519)
}

/// Wraps the file key to a recipient's public key; returns the ephemeral
/// public key and the wrapped key.
pub(crate) fn wrap_x25519(recipient: &PublicKey, key: &FileKey, rng: &mut dyn RandomSource) -> Result<([u8; KEY_LEN], [u8; WRAPPED_LEN])> {
    let mut secret = Zeroizing::new([0u8; KEY_LEN]);
    rng.fill(secret.as_mut())?;
    let ephemeral = x25519_dalek::StaticSecret::from(*secret);
    let epk = x25519_dalek::PublicKey::from(&ephemeral).to_bytes();
    let shared = ephemeral.diffie_hellman(&x25519_dalek::PublicKey::from(recipient.0));
    if !shared.was_contributory() {
        return Err(Error::invalid("recipient public key is a low-order point"));
    }
    let kek = x25519_kek(shared.as_bytes(), &epk, &recipient.0);
    Ok((epk, wrap(&kek, AAD_X25519, key)?))
}

pub(crate) fn unwrap_x25519(identity: &Identity, epk: &[u8; KEY_LEN], wrapped: &[u8; WRAPPED_LEN]) -> Option<FileKey> {
    let shared = identity.secret.diffie_hellman(&x25519_dalek::PublicKey::from(*epk));
    if !shared.was_contributory() {
        return None;
    }
    let kek = x25519_kek(shared.as_bytes(), epk, &identity.public().0);
    unwrap(&kek, AAD_X25519, wrapped)
}

/// An X25519 public key, written `coffer1…` (bech32).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(pub(crate) [u8; KEY_LEN]);

impl PublicKey {
    /// The raw 32 bytes.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.0
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hrp = Hrp::parse_unchecked(HRP_PUBLIC);
        match bech32::encode::<Bech32>(hrp, &self.0) {
            Ok(s) => f.write_str(&s),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (hrp, data) = bech32::decode(s.trim()).map_err(|e| Error::invalid(format!("not a coffer public key: {e}")))?;
        if hrp.as_str() != HRP_PUBLIC || data.len() != KEY_LEN {
            return Err(Error::invalid("not a coffer public key (expected coffer1…)"));
        }
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(&data);
        Ok(Self(key))
    }
}

/// An X25519 private key, written `COFFER-SECRET-KEY-1…` (bech32, upper
/// case). Zeroized on drop; its `Debug` shows only the public key.
#[derive(Clone)]
pub struct Identity {
    secret: x25519_dalek::StaticSecret,
}

impl Identity {
    /// A fresh identity from the operating system's random source.
    pub fn generate() -> Result<Self> {
        Self::generate_with(&mut super::OsRandom)
    }

    /// A fresh identity from the given random source.
    pub fn generate_with(rng: &mut dyn RandomSource) -> Result<Self> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill(bytes.as_mut())?;
        Ok(Self { secret: x25519_dalek::StaticSecret::from(*bytes) })
    }

    /// The public key to seal to.
    pub fn public(&self) -> PublicKey {
        PublicKey(x25519_dalek::PublicKey::from(&self.secret).to_bytes())
    }

    /// The secret in its text form. Handle with care.
    pub fn to_secret_string(&self) -> Zeroizing<String> {
        let hrp = Hrp::parse_unchecked(HRP_SECRET);
        let mut bytes = self.secret.to_bytes();
        let text = bech32::encode::<Bech32>(hrp, &bytes).unwrap_or_default().to_uppercase();
        bytes.zeroize();
        Zeroizing::new(text)
    }

    /// Parses every identity in an identity file (lines starting with `#`
    /// and blank lines are ignored).
    pub fn parse_file(text: &str) -> Result<Vec<Identity>> {
        let identities = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(Identity::from_str).collect::<Result<Vec<_>>>()?;
        if identities.is_empty() {
            return Err(Error::invalid("no identity found (expected a COFFER-SECRET-KEY-1… line)"));
        }
        Ok(identities)
    }

    /// The text of an identity file for this identity.
    pub fn to_file_string(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("# coffer identity (X25519). Keep this file secret.\n# public key: {}\n{}\n", self.public(), self.to_secret_string().as_str()))
    }
}

impl FromStr for Identity {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (hrp, mut data) = bech32::decode(s.trim()).map_err(|_| Error::invalid("not a coffer identity (expected COFFER-SECRET-KEY-1…)"))?;
        if !hrp.as_str().eq_ignore_ascii_case(HRP_SECRET) || data.len() != KEY_LEN {
            data.zeroize();
            return Err(Error::invalid("not a coffer identity (expected COFFER-SECRET-KEY-1…)"));
        }
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        bytes.copy_from_slice(&data);
        data.zeroize();
        Ok(Self { secret: x25519_dalek::StaticSecret::from(*bytes) })
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity(public: {})", self.public())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_through_text() {
        let id = Identity::generate().unwrap();
        let text = id.to_file_string();
        let parsed = Identity::parse_file(&text).unwrap();
        assert_eq!(parsed[0].public(), id.public());
        let public = id.public().to_string();
        assert!(public.starts_with("coffer1"));
        assert_eq!(public.parse::<PublicKey>().unwrap(), id.public());
        assert!(id.to_secret_string().starts_with("COFFER-SECRET-KEY-1"));
        assert!(!format!("{id:?}").contains("SECRET"));
    }

    #[test]
    fn bad_key_text_is_invalid_input() {
        assert_eq!("coffer1qqqq".parse::<PublicKey>().unwrap_err().code(), "INVALID_INPUT");
        assert_eq!("AGE-SECRET-KEY-1XYZ".parse::<Identity>().unwrap_err().code(), "INVALID_INPUT");
        let id = Identity::generate().unwrap();
        let mut s = id.public().to_string();
        s.replace_range(10..11, if &s[10..11] == "q" { "p" } else { "q" });
        assert_eq!(s.parse::<PublicKey>().unwrap_err().code(), "INVALID_INPUT", "checksum catches a typo");
    }
}
