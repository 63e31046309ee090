//! manifest.json: what a stored snapshot is (SPEC §3), written last, read as hostile input.
//!
//! Owns the manifest's fields, their JSON form, and the checks a manifest passes before it
//! is written or believed. It does no I/O. It must never trust a manifest read back: the
//! caller bounds the read to [`MANIFEST_LIMIT`], a parse error names the file and the
//! fault, and malformed ids, checksums or digests are refused rather than carried along.
//! Unknown fields are tolerated, so an older replisnap can still list, fetch and retain
//! what a newer one stored.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::hash::StoredObject;
use super::id::SnapshotId;
use super::StorageError;
use crate::server_version::Family;
use crate::summary::DbSummary;

/// The largest manifest read from storage. Real ones are a few KiB (one entry per
/// database); the limit keeps a hostile or broken file from costing more than this.
pub const MANIFEST_LIMIT: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub id: SnapshotId,
    /// RFC 3339, UTC, milliseconds (`2026-11-25T08:30:00.125Z`).
    #[serde(serialize_with = "ser_time", deserialize_with = "de_time")]
    pub created_at: DateTime<Utc>,
    pub source: SourceInfo,
    pub rdb: RdbInfo,
    /// 40 lowercase hex digits, as `DEBUG DIGEST` prints them.
    pub digest: String,
    /// The same per-database shape as `inspect --json`.
    #[serde(deserialize_with = "de_databases")]
    pub databases: Vec<DbSummary>,
    pub keys_total: u64,
    pub durations: Durations,
    pub replisnap_version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// host:port as configured.
    pub address: String,
    pub server: ServerKind,
    /// The master's version, e.g. "7.2.4".
    pub version: String,
    /// The replication ID the snapshot belongs to; empty after a SYNC fallback, which has none.
    pub replid: String,
    /// The replication offset the snapshot is consistent at.
    pub offset: u64,
    /// The stream archive's history this offset belongs to (`<replid>-<offset>` of the
    /// full sync that started it), when the archive is on: what `fetch --at` replays from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    Redis,
    Valkey,
}

impl From<Family> for ServerKind {
    fn from(f: Family) -> Self {
        match f {
            Family::Redis => ServerKind::Redis,
            Family::Valkey => ServerKind::Valkey,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RdbInfo {
    /// "REDIS" or "VALKEY".
    pub magic: String,
    pub version: u32,
    pub bytes: u64,
    /// 64 lowercase hex digits.
    pub sha256: String,
    /// 16 lowercase hex digits: the file's CRC-64/Jones trailer.
    pub crc64: String,
}

impl RdbInfo {
    /// The manifest's view of what a sink stored.
    pub fn new(magic: &str, version: u32, stored: &StoredObject) -> Self {
        RdbInfo {
            magic: magic.to_string(),
            version,
            bytes: stored.bytes,
            sha256: stored.sha256.clone(),
            crc64: stored.crc64_hex(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Durations {
    pub pause_seconds: f64,
    pub write_seconds: f64,
    pub upload_seconds: f64,
}

impl Manifest {
    /// The version string every manifest this build writes carries.
    pub const fn this_version() -> &'static str {
        env!("CARGO_PKG_VERSION")
    }

    /// Parse and check a manifest read from `location` (a path or object key, for errors).
    pub fn from_json(data: &[u8], location: &str) -> Result<Manifest, StorageError> {
        let bad = |reason: String| StorageError::Manifest {
            path: location.to_string(),
            reason,
        };
        if data.len() as u64 > MANIFEST_LIMIT {
            return Err(StorageError::ManifestTooLarge {
                path: location.to_string(),
                limit: MANIFEST_LIMIT,
            });
        }
        // serde_json's message names the field and the line and column.
        let m: Manifest = serde_json::from_slice(data).map_err(|e| bad(e.to_string()))?;
        m.validate().map_err(bad)?;
        Ok(m)
    }

    /// Pretty JSON with a final newline, after the same checks a reader applies: never
    /// write what a reader would refuse.
    pub fn to_json(&self) -> Result<Vec<u8>, String> {
        self.validate()?;
        let mut v = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        v.push(b'\n');
        Ok(v)
    }

    /// Field checks that do not need the stored file.
    pub fn validate(&self) -> Result<(), String> {
        hex_field("rdb.sha256", &self.rdb.sha256, 64)?;
        hex_field("rdb.crc64", &self.rdb.crc64, 16)?;
        hex_field("digest", &self.digest, 40)?;
        let d = &self.durations;
        for (name, v) in [
            ("durations.pause_seconds", d.pause_seconds),
            ("durations.write_seconds", d.write_seconds),
            ("durations.upload_seconds", d.upload_seconds),
        ] {
            // JSON has no NaN or infinity: serde_json would write null and refuse it back.
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{name}: {v} is not a duration in seconds"));
            }
        }
        Ok(())
    }

    /// Before a backend writes the manifest of the RDB it just stored: the manifest must
    /// describe exactly that object, and the object's trailer must hold its CRC.
    pub fn check_describes(
        &self,
        id: &SnapshotId,
        stored: &StoredObject,
    ) -> Result<(), StorageError> {
        let mismatch = |what: String| StorageError::Mismatch {
            id: id.to_string(),
            what,
        };
        if &self.id != id {
            return Err(mismatch(format!("manifest id is {}", self.id)));
        }
        if !stored.crc64_confirmed() {
            return Err(mismatch(format!(
                "the stored RDB's trailer {} is not the CRC-64 {} of its {} bytes",
                stored
                    .trailer_crc64
                    .map_or("(none: under 8 bytes)".to_string(), |t| format!("{t:016x}")),
                stored.crc64_hex(),
                stored.bytes,
            )));
        }
        let r = &self.rdb;
        if r.bytes != stored.bytes || r.sha256 != stored.sha256 || r.crc64 != stored.crc64_hex() {
            return Err(mismatch(format!(
                "manifest says {} bytes, sha256 {}, crc64 {}; stored {} bytes, sha256 {}, crc64 {}",
                r.bytes,
                r.sha256,
                r.crc64,
                stored.bytes,
                stored.sha256,
                stored.crc64_hex()
            )));
        }
        self.validate().map_err(|reason| StorageError::Manifest {
            path: format!("manifest of {id}"),
            reason,
        })
    }
}

fn hex_field(name: &str, v: &str, len: usize) -> Result<(), String> {
    if v.len() == len && v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        let shown: String = v.chars().take(80).collect();
        Err(format!(
            "{name}: {shown:?} is not {len} lowercase hex digits"
        ))
    }
}

fn ser_time<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn de_time<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let s = String::deserialize(d)?;
    DateTime::parse_from_rfc3339(&s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| serde::de::Error::custom(format!("created_at {s:?}: not RFC 3339: {e}")))
}

// `DbSummary` (summary.rs) is what `inspect` serialises; reading it back goes through a
// remote definition so the manifest reuses the type, and its shape, without a copy.
#[derive(Deserialize)]
#[serde(remote = "DbSummary")]
struct DbSummaryDef {
    db: u64,
    keys: u64,
    expires: u64,
    types: BTreeMap<String, u64>,
}

fn de_databases<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DbSummary>, D::Error> {
    #[derive(Deserialize)]
    struct Db(#[serde(with = "DbSummaryDef")] DbSummary);
    Ok(Vec::<Db>::deserialize(d)?
        .into_iter()
        .map(|w| w.0)
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::storage::hash::ObjectHasher;

    pub(crate) fn sample() -> Manifest {
        let mut types: BTreeMap<String, u64> = crate::summary::TYPE_NAMES
            .iter()
            .map(|t| (t.to_string(), 0))
            .collect();
        types.insert("string".into(), 2);
        Manifest {
            id: SnapshotId::parse("20261125T083000Z").unwrap(),
            created_at: DateTime::parse_from_rfc3339("2026-11-25T08:30:00.125Z")
                .unwrap()
                .with_timezone(&Utc),
            source: SourceInfo {
                address: "10.0.0.5:6379".into(),
                server: ServerKind::Valkey,
                version: "8.1.1".into(),
                replid: "a".repeat(40),
                offset: 1234,
                history: None,
            },
            rdb: RdbInfo {
                magic: "REDIS".into(),
                version: 11,
                bytes: 100,
                sha256: "0".repeat(64),
                crc64: "0".repeat(16),
            },
            digest: "f".repeat(40),
            databases: vec![DbSummary {
                db: 0,
                keys: 2,
                expires: 1,
                types,
            }],
            keys_total: 2,
            durations: Durations {
                pause_seconds: 0.0004,
                write_seconds: 1.5,
                upload_seconds: 0.0,
            },
            replisnap_version: Manifest::this_version().into(),
        }
    }

    #[test]
    fn round_trip_and_field_names() {
        let m = sample();
        let json = m.to_json().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["created_at"], "2026-11-25T08:30:00.125Z");
        assert_eq!(v["source"]["server"], "valkey");
        assert_eq!(v["rdb"]["crc64"], "0000000000000000");
        assert_eq!(v["durations"]["pause_seconds"], 0.0004);
        // Same shape as inspect's databases, because it is inspect's type.
        assert_eq!(v["databases"], serde_json::to_value(&m.databases).unwrap());
        assert_eq!(Manifest::from_json(&json, "m").unwrap(), m);
    }

    #[test]
    fn unknown_fields_are_tolerated() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["added_later"] = serde_json::json!({"x": [1, 2]});
        v["rdb"]["compression"] = "lzf".into();
        v["databases"][0]["memory"] = 5.into();
        let back = Manifest::from_json(&serde_json::to_vec(&v).unwrap(), "m").unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn bad_manifests_name_file_and_fault() {
        type Edit = fn(&mut serde_json::Value);
        let cases: [(&str, Edit); 6] = [
            ("id", |v| v["id"] = "../../etc".into()),
            ("rdb.sha256", |v| v["rdb"]["sha256"] = "ABC".into()),
            ("digest", |v| v["digest"] = "00".into()),
            ("created_at", |v| v["created_at"] = "yesterday".into()),
            ("missing field `rdb`", |v| {
                v.as_object_mut().unwrap().remove("rdb");
            }),
            ("memcached", |v| v["source"]["server"] = "memcached".into()),
        ];
        for (needle, f) in cases {
            let mut v = serde_json::to_value(sample()).unwrap();
            f(&mut v);
            let err = Manifest::from_json(&serde_json::to_vec(&v).unwrap(), "x/manifest.json")
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("x/manifest.json: "), "{err}");
            let key = needle.split(' ').next_back().unwrap_or(needle);
            assert!(err.contains(key.trim_matches('`')), "{needle}: {err}");
        }
        let err = Manifest::from_json(b"{\"id\": ", "y")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn check_describes_wants_the_stored_object() {
        let mut data: Vec<u8> = (0..100u8).collect();
        let c = crate::rdb::crc::crc64(&data);
        data.extend_from_slice(&c.to_le_bytes());
        let mut h = ObjectHasher::new();
        h.update(&data);
        let stored = h.finish();
        let mut m = sample();
        m.rdb = RdbInfo::new("REDIS", 11, &stored);
        m.check_describes(&m.id.clone(), &stored).unwrap();
        let other = SnapshotId::parse("20261125T083000Z-1").unwrap();
        assert!(m.check_describes(&other, &stored).is_err());
        let mut m2 = m.clone();
        m2.rdb.bytes += 1;
        assert!(m2.check_describes(&m.id, &stored).is_err());
        let mut m3 = m.clone();
        m3.durations.write_seconds = f64::NAN;
        assert!(m3.check_describes(&m.id, &stored).is_err());
        let mut torn = stored.clone();
        torn.trailer_crc64 = Some(stored.crc64 ^ 1);
        assert!(m.check_describes(&m.id, &torn).is_err());
    }
}
