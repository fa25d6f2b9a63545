//! Argon2id for passphrases, with an opt-in work area kept between runs.
//!
//! Every derivation needs `memory_kib` of work memory (64 MiB by default).
//! A one-shot tool allocates it and frees it. A long-lived process that
//! derives again and again (the server: one derivation per passphrase backup,
//! restore, verify or import) can keep one work area instead
//! ([`keep_kdf_memory`]): on a machine where new memory is costly — a VM whose
//! freed pages go back to the host, where faulting in 64 MiB took 0.2–0.3 s,
//! twice the hash itself — a kept area is already resident. It is zeroed after
//! every use, so no passphrase-derived block stays in memory between runs, and
//! released on demand ([`release_kdf_memory`]), e.g. after a quiet minute.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use argon2::{Algorithm, Argon2, Block, Params, Version};
use zeroize::{Zeroize, Zeroizing};

use super::keys::{KEY_LEN, SALT_LEN};
use super::KdfParams;
use crate::error::{Error, Result};

/// Largest derivation (KiB of memory) that uses the kept area; 0 = none is kept.
static KEEP_KIB: AtomicU32 = AtomicU32::new(0);
/// Derivations that ran in the kept area.
static KEPT_USES: AtomicU64 = AtomicU64::new(0);
/// Bytes of the kept area (read without waiting for a derivation that holds it).
static KEPT_BYTES: AtomicUsize = AtomicUsize::new(0);
static KEPT: Mutex<Option<Vec<Block>>> = Mutex::new(None);

/// Keeps one Argon2id work area between derivations that need at most
/// `limit_kib` KiB; larger ones (a hostile header may ask for up to the
/// reader's limit) and concurrent ones allocate their own, as without it.
/// `0` stops keeping it and frees it.
pub fn keep_kdf_memory(limit_kib: u32) {
    KEEP_KIB.store(limit_kib, Ordering::Relaxed);
    if limit_kib == 0 {
        release_kdf_memory();
    }
}

/// Frees the kept work area, if any; the next derivation allocates it again.
pub fn release_kdf_memory() {
    let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    drop(kept.take());
    KEPT_BYTES.store(0, Ordering::Relaxed);
}

/// Bytes of Argon2id work memory kept now (0 when none).
pub fn kdf_memory_kept_bytes() -> usize {
    KEPT_BYTES.load(Ordering::Relaxed)
}

/// How many derivations have run in the kept work area (lets a caller see
/// whether it was used since it last looked, to release it when idle).
pub fn kdf_memory_uses() -> u64 {
    KEPT_USES.load(Ordering::Relaxed)
}

/// Derives the passphrase KEK with Argon2id.
pub(crate) fn passphrase_kek(passphrase: &[u8], salt: &[u8; SALT_LEN], kdf: &KdfParams) -> Result<Zeroizing<[u8; KEY_LEN]>> {
    let params =
        Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(KEY_LEN)).map_err(|e| Error::invalid(format!("Argon2id parameters: {e}")))?;
    let blocks = params.block_count();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut kek = Zeroizing::new([0u8; KEY_LEN]);
    let kept = if kdf.memory_kib <= KEEP_KIB.load(Ordering::Relaxed) { KEPT.try_lock().ok() } else { None };
    let hashed = match kept {
        Some(mut kept) => {
            let area = kept.get_or_insert_with(Vec::new);
            if area.len() < blocks {
                // Grown to the largest derivation seen (at most the limit).
                *area = vec![Block::default(); blocks];
                KEPT_BYTES.store(blocks * Block::SIZE, Ordering::Relaxed);
            }
            let work = &mut area[..blocks];
            let hashed = argon.hash_password_into_with_memory(passphrase, salt, kek.as_mut(), &mut *work);
            work.iter_mut().for_each(Zeroize::zeroize);
            KEPT_USES.fetch_add(1, Ordering::Relaxed);
            hashed
        }
        None => argon.hash_password_into(passphrase, salt, kek.as_mut()),
    };
    hashed.map_err(|e| Error::invalid(format!("Argon2id: {e}")))?;
    Ok(kek)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(memory_kib: u32) -> KdfParams {
        KdfParams { memory_kib, iterations: 1, parallelism: 1 }
    }

    fn kept_len_and_zeroed() -> Option<(usize, bool)> {
        KEPT.lock().unwrap().as_ref().map(|a| (a.len(), a.iter().all(|b| b.as_ref().iter().all(|&x| x == 0))))
    }

    // One test: the kept area is process-wide state.
    #[test]
    fn a_kept_work_area_gives_the_same_keys_is_zeroed_after_use_and_can_be_released() {
        let salt = [7u8; SALT_LEN];
        let fresh_small = passphrase_kek(b"correct horse", &salt, &params(256)).unwrap();
        let fresh_large = passphrase_kek(b"correct horse", &salt, &params(1024)).unwrap();
        assert_eq!(kept_len_and_zeroed(), None, "nothing is kept unless asked");

        keep_kdf_memory(512);
        let uses = kdf_memory_uses();
        assert_eq!(*passphrase_kek(b"correct horse", &salt, &params(256)).unwrap(), *fresh_small);
        assert_eq!(kept_len_and_zeroed(), Some((256, true)), "256 KiB area kept, zeroed after use");
        assert_eq!(kdf_memory_kept_bytes(), 256 << 10);
        assert_eq!(*passphrase_kek(b"correct horse", &salt, &params(256)).unwrap(), *fresh_small, "a reused area gives the same key");
        assert_ne!(*passphrase_kek(b"another horse", &salt, &params(256)).unwrap(), *fresh_small);
        assert_eq!(kdf_memory_uses(), uses + 3);

        // Above the limit: its own memory, the kept area untouched.
        assert_eq!(*passphrase_kek(b"correct horse", &salt, &params(1024)).unwrap(), *fresh_large);
        assert_eq!(kdf_memory_uses(), uses + 3);
        assert_eq!(kept_len_and_zeroed(), Some((256, true)));

        // Busy (another derivation holds it): its own memory, same key.
        {
            let _held = KEPT.lock().unwrap();
            assert_eq!(*passphrase_kek(b"correct horse", &salt, &params(256)).unwrap(), *fresh_small);
        }
        assert_eq!(kdf_memory_uses(), uses + 3);

        release_kdf_memory();
        assert_eq!(kept_len_and_zeroed(), None);
        assert_eq!(kdf_memory_kept_bytes(), 0);
        assert_eq!(*passphrase_kek(b"correct horse", &salt, &params(256)).unwrap(), *fresh_small);
        assert_eq!(kept_len_and_zeroed(), Some((256, true)), "allocated again after a release");

        keep_kdf_memory(0);
        assert_eq!(kept_len_and_zeroed(), None, "turning it off frees it");
        assert_eq!(*passphrase_kek(b"correct horse", &salt, &params(256)).unwrap(), *fresh_small);
        assert_eq!(kept_len_and_zeroed(), None);
    }
}
