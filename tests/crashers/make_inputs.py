#!/usr/bin/env python3
"""Writes the hand-made hostile inputs under tests/crashers/<target>/.

Each file is named `<what>__<CODE>.bin`: tests/crashers.rs replays it through
the fuzz harness (fuzz/src/harness.rs) and asserts that it fails with CODE.
Inputs derived from a valid file start from the fuzz seeds (fuzz/seeds/),
which are deterministic. Rerunning rewrites the same bytes.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "..", "..", "fuzz", "seeds")

B_MAGIC = b"\x89CFB\r\n\x1a\n"
S_MAGIC = b"\x89CFS\r\n\x1a\n"


def seed(target, name):
    with open(os.path.join(SEEDS, target, name), "rb") as f:
        return f.read()


def write(target, name, data):
    path = os.path.join(HERE, target, name + ".bin")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def bundle_inputs():
    hdr = B_MAGIC + struct.pack("<HH", 1, 0)

    def block(kind, codec, raw_len, stored_len, payload=b""):
        return bytes([kind, codec]) + struct.pack("<II", raw_len, stored_len) + payload

    good = seed("bundle_reader", "docs_history.cfb")
    toc_offset = struct.unpack("<Q", good[-48:-40])[0]
    out = {
        "empty__TRUNCATED": b"",
        "half_magic__TRUNCATED": B_MAGIC[:5],
        "text__NOT_A_BUNDLE": b'{"not": "a bundle"}\n',
        "sealed_magic__NOT_A_BUNDLE": S_MAGIC + b"\x01\x00",
        "header_cut__TRUNCATED": hdr[:10],
        "version_0__UNSUPPORTED_VERSION": B_MAGIC + struct.pack("<HH", 0, 0),
        "version_3__UNSUPPORTED_VERSION": B_MAGIC + struct.pack("<HH", 3, 0),
        "flags_set__UNSUPPORTED_VERSION": B_MAGIC + struct.pack("<HH", 1, 0x8000),
        "header_only__TRUNCATED": hdr,
        "block_header_cut__TRUNCATED": hdr + block(1, 0, 4, 4)[:7],
        "raw_len_4g__LIMIT_EXCEEDED": hdr + block(1, 1, 0xFFFFFFFF, 16, b"\0" * 16),
        "zstd_ratio_bomb__LIMIT_EXCEEDED": hdr + block(3, 1, 64 << 20, 8, b"\0" * 8),
        "stored_lengths_differ__CORRUPT": hdr + block(1, 0, 4, 5, b"null!"),
        "unknown_kind__CORRUPT": hdr + block(9, 0, 4, 4, b"null"),
        "unknown_codec__CORRUPT": hdr + block(1, 7, 4, 4, b"null"),
        "stored_payload_cut__TRUNCATED": hdr + block(1, 0, 1000, 1000, b"{" * 10),
        "zstd_garbage__CORRUPT": hdr + block(1, 1, 100, 10, b"\x28\xb5\x2f\xfd" + b"\xff" * 6),
        "schema_not_json__CORRUPT": hdr + block(1, 0, 4, 4, b"nul!"),
        "documents_before_schema__CORRUPT": hdr + block(3, 0, 2, 2, b"\x01a"),
        "toc_first__CORRUPT": hdr + block(6, 0, 2, 2, b"{}"),
        # schema, then a collection whose name varint claims 2^63 bytes
        "collection_name_len_huge__CORRUPT": hdr + block(1, 0, 4, 4, b"null")
        + block(2, 0, 12, 12, b"\xff" * 9 + b"\x7f{}"),
        # schema, collection "c", then a documents block whose id varint is 10 bytes of 0xff
        "document_id_varint_overflow__CORRUPT": hdr + block(1, 0, 4, 4, b"null")
        + block(2, 0, 4, 4, b"\x01c{}") + block(3, 0, 10, 10, b"\xff" * 10),
        # a document record of 2^32 bytes in a 6-byte block
        "document_len_huge__CORRUPT": hdr + block(1, 0, 4, 4, b"null")
        + block(2, 0, 4, 4, b"\x01c{}") + block(3, 0, 8, 8, b"\x01a\xff\xff\xff\xff\x0f\x00"),
        "valid_cut_mid_block__TRUNCATED": good[: len(good) // 2],
        "valid_cut_in_trailer__TRUNCATED": good[:-5],
        "valid_trailing_byte__CORRUPT": good + b"\0",
        "valid_toc_flipped__CORRUPT": good[: toc_offset + 20] + bytes([good[toc_offset + 20] ^ 0x01]) + good[toc_offset + 21 :],
        "valid_trailer_offset_wrong__CORRUPT": good[:-48] + struct.pack("<Q", toc_offset - 1) + good[-40:],
        # the trailer's bytes_hash (blake3 of everything before the trailer) altered
        "valid_bytes_hash_flipped__CORRUPT": good[:-30] + bytes([good[-30] ^ 0x01]) + good[-29:],
    }
    # One bit flipped in the high byte of the collection block's raw_len (at 35 + 2 + 3).
    body = bytearray(good)
    body[40] ^= 0x10
    out["valid_raw_len_flipped__LIMIT_EXCEEDED"] = bytes(body)
    # One bit flipped inside the schema's JSON text ({"version":1} at 22..35).
    body = bytearray(good)
    body[26] ^= 0x01
    out["valid_schema_flipped__CORRUPT"] = bytes(body)
    # One bit flipped in the last document block's payload: the digest no longer matches.
    body = bytearray(good)
    body[toc_offset - 3] ^= 0x01
    out["valid_documents_flipped__CORRUPT"] = bytes(body)
    for name, data in out.items():
        write("bundle_reader", name, data)


def sealed_inputs():
    good = seed("sealed_header", "passphrase_bundle.cfs")
    hlen = struct.unpack("<I", good[10:14])[0]
    # offsets inside a passphrase header
    seg_log2 = 14
    count = 14 + 1 + 16
    kind = count + 1
    salt = kind + 1
    kdf_m = salt + 16
    kdf_t = kdf_m + 4
    kdf_p = kdf_t + 4
    meta_len = kdf_p + 4 + 48

    def patched(data, offset, new):
        return data[:offset] + new + data[offset + len(new):]

    unit = (1 << 14) + 16
    two = seed("sealed_header", "x25519_two_segments.cfs")
    two_hlen = struct.unpack("<I", two[10:14])[0]
    out = {
        "empty__TRUNCATED": b"",
        "half_magic__TRUNCATED": S_MAGIC[:3],
        "text__NOT_A_BUNDLE": b"age-encryption.org/v1\n",
        "bundle_magic__NOT_A_BUNDLE": B_MAGIC + b"\x01\x00\x00\x00",
        "prefix_cut__TRUNCATED": good[:12],
        "version_2__UNSUPPORTED_VERSION": patched(good, 8, b"\x02"),
        "flags_set__UNSUPPORTED_VERSION": patched(good, 9, b"\x80"),
        "header_len_4g__LIMIT_EXCEEDED": patched(good, 10, struct.pack("<I", 0xFFFFFFFF)),
        "header_len_tiny__CORRUPT": patched(good, 10, struct.pack("<I", 20)),
        "header_len_long__CORRUPT": patched(good, 10, struct.pack("<I", hlen + 16)),
        "header_cut__TRUNCATED": good[: hlen - 1],
        "segment_log2_40__CORRUPT": patched(good, seg_log2, b"\x28"),
        "segment_log2_13__CORRUPT": patched(good, seg_log2, b"\x0d"),
        "no_recipients__CORRUPT": patched(good, count, b"\x00"),
        "recipient_kind_9__UNSUPPORTED_VERSION": patched(good, kind, b"\x09"),
        "kdf_memory_4t__LIMIT_EXCEEDED": patched(good, kdf_m, struct.pack("<I", 0xFFFFFFFF)),
        "kdf_iterations_max__LIMIT_EXCEEDED": patched(good, kdf_t, struct.pack("<I", 0xFFFFFFFF)),
        "kdf_iterations_0__CORRUPT": patched(good, kdf_t, struct.pack("<I", 0)),
        "kdf_parallelism_0__CORRUPT": patched(good, kdf_p, struct.pack("<I", 0)),
        "metadata_len_4g__LIMIT_EXCEEDED": patched(good, meta_len, struct.pack("<I", 0xFFFFFFFF)),
        "metadata_len_past_header__CORRUPT": patched(good, meta_len, struct.pack("<I", 1000)),
        "salt_flipped__WRONG_KEY": patched(good, salt, bytes([good[salt] ^ 1])),
        "commitment_flipped__CORRUPT": patched(good, hlen - 64, bytes([good[hlen - 64] ^ 1])),
        "mac_flipped__CORRUPT": patched(good, hlen - 1, bytes([good[hlen - 1] ^ 1])),
        "nonce_flipped__CORRUPT": patched(good, seg_log2 + 1, bytes([good[seg_log2 + 1] ^ 1])),
        "header_only__TRUNCATED": good[:hlen],
        "tag_cut__TRUNCATED": good[: hlen + 10],
        "last_tag_flipped__CORRUPT": good[:-1] + bytes([good[-1] ^ 1]),
        "trailing_byte__CORRUPT": two + b"\0",
        "cut_at_segment_boundary__TRUNCATED": two[: two_hlen + unit],
        "segment_dropped__CORRUPT": two[:two_hlen] + two[two_hlen + unit :],
        "segments_swapped__CORRUPT": two[:two_hlen] + two[two_hlen + unit :] + two[two_hlen : two_hlen + unit],
        "first_segment_flipped__CORRUPT": patched(two, two_hlen + 100, bytes([two[two_hlen + 100] ^ 4])),
    }
    # An X25519 file (two stanzas, both to the fixed identity) whose ephemeral
    # shares are both altered: no stanza unwraps.
    x = bytearray(seed("sealed_header", "x25519_metadata.cfs"))
    stanza = 1 + 32 + 48
    for eph in (kind + 1, kind + 1 + stanza):
        x[eph + 5] ^= 1
    out["x25519_ephemerals_flipped__WRONG_KEY"] = bytes(x)
    x[kind + 1 + stanza + 5] ^= 1  # the second stanza intact again: it opens with it
    out["x25519_first_stanza_flipped__CORRUPT"] = bytes(x)
    for name, data in out.items():
        write("sealed_header", name, data)


if __name__ == "__main__":
    bundle_inputs()
    sealed_inputs()
