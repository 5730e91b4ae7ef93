//! The node's view of its [`Storage`]: key states encoded with postcard under a namespace prefix,
//! and a little metadata (the actor id of this incarnation).
//!
//! Prefixes keep the namespaces of one byte map apart, so that later kinds of records (hints, ring
//! state) can share the engine: `d/` + key for key states, `m/` + name for metadata.

use super::Storage;
use crate::version::KeyVersions;
use std::io;

const DATA_PREFIX: &[u8] = b"d/";
const META_PREFIX: &[u8] = b"m/";

/// Reads key states; what the protocol core is given so that it never writes storage itself.
pub trait ReadState {
    /// The state of `key` (empty if never written).
    fn read_state(&self, key: &[u8]) -> io::Result<KeyVersions>;
    /// How many keys are stored (for status reports; may be slow).
    fn key_count(&self) -> u64;
}

/// Key states over a byte-map engine.
#[derive(Debug)]
pub struct Keyspace<S> {
    storage: S,
}

fn prefixed(prefix: &[u8], key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + key.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(key);
    k
}

impl<S: Storage> Keyspace<S> {
    /// Wraps an engine.
    pub fn new(storage: S) -> Keyspace<S> {
        Keyspace { storage }
    }

    /// Stores a key's state (durable after the next [`Keyspace::sync`]).
    pub fn write_state(&mut self, key: &[u8], state: &KeyVersions) -> io::Result<()> {
        let bytes = postcard::to_stdvec(state)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        self.storage.put(&prefixed(DATA_PREFIX, key), &bytes)
    }

    /// Every stored key, in byte order.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        self.storage
            .keys()
            .into_iter()
            .filter_map(|k| k.strip_prefix(DATA_PREFIX).map(<[u8]>::to_vec))
            .collect()
    }

    /// A metadata value.
    pub fn meta(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        self.storage.get(&prefixed(META_PREFIX, name.as_bytes()))
    }

    /// Sets a metadata value (durable after the next sync).
    pub fn set_meta(&mut self, name: &str, value: &[u8]) -> io::Result<()> {
        self.storage
            .put(&prefixed(META_PREFIX, name.as_bytes()), value)
    }

    /// Makes every write so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.storage.sync()
    }

    /// The engine underneath.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }
}

impl<S: Storage> ReadState for Keyspace<S> {
    fn key_count(&self) -> u64 {
        self.keys().len() as u64
    }
    fn read_state(&self, key: &[u8]) -> io::Result<KeyVersions> {
        match self.storage.get(&prefixed(DATA_PREFIX, key))? {
            None => Ok(KeyVersions::new()),
            Some(bytes) => postcard::from_bytes(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("stored state of a key does not decode: {e}"),
                )
            }),
        }
    }
}
