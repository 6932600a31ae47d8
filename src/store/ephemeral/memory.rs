//! The `memory` backend: process-local maps guarded by a mutex; lost on restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::EphemeralStore;
use crate::clock::{Clock, Timestamp};
use crate::store::StoreError;

/// In-process ephemeral store, for a single replica or development.
#[derive(Debug)]
pub(crate) struct MemoryStore {
    clock: Arc<dyn Clock>,
    inner: Mutex<Maps>,
}

#[derive(Debug, Default)]
struct Maps {
    values: HashMap<String, (Vec<u8>, Timestamp)>,
    counters: HashMap<String, (u64, Timestamp)>,
    sets: HashMap<String, HashMap<String, Timestamp>>,
    writes_since_sweep: usize,
}

impl Maps {
    /// Drops expired entries every so often so that abandoned keys do not accumulate.
    fn maybe_sweep(&mut self, now: Timestamp) {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= 1024 {
            self.sweep(now);
        }
    }

    fn sweep(&mut self, now: Timestamp) {
        self.writes_since_sweep = 0;
        self.values.retain(|_, (_, expires)| *expires > now);
        self.counters.retain(|_, (_, expires)| *expires > now);
        for members in self.sets.values_mut() {
            members.retain(|_, expires| *expires > now);
        }
        self.sets.retain(|_, members| !members.is_empty());
    }
}

impl MemoryStore {
    /// An empty store reading time from `clock`.
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock, inner: Mutex::new(Maps::default()) }
    }
}

#[async_trait]
impl EphemeralStore for MemoryStore {
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut maps = self.inner.lock();
        maps.values.insert(key.to_owned(), (value.to_vec(), now.plus(ttl)));
        maps.maybe_sweep(now);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let now = self.clock.now();
        let maps = self.inner.lock();
        Ok(maps
            .values
            .get(key)
            .filter(|(_, expires)| *expires > now)
            .map(|(value, _)| value.clone()))
    }

    async fn replace(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut maps = self.inner.lock();
        match maps.values.get_mut(key) {
            Some(entry) if entry.1 > now && entry.0 == expected => {
                *entry = (value.to_vec(), now.plus(ttl));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let now = self.clock.now();
        let mut maps = self.inner.lock();
        Ok(maps.values.remove(key).filter(|(_, expires)| *expires > now).map(|(value, _)| value))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut maps = self.inner.lock();
        maps.values.remove(key);
        maps.counters.remove(key);
        Ok(())
    }

    async fn incr(&self, key: &str, window: Duration) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let mut maps = self.inner.lock();
        let entry = maps.counters.entry(key.to_owned()).or_insert((0, now.plus(window)));
        if entry.1 <= now {
            *entry = (0, now.plus(window));
        }
        entry.0 += 1;
        let count = entry.0;
        maps.maybe_sweep(now);
        Ok(count)
    }

    async fn set_add(&self, key: &str, member: &str, ttl: Duration) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut maps = self.inner.lock();
        maps.sets.entry(key.to_owned()).or_default().insert(member.to_owned(), now.plus(ttl));
        maps.maybe_sweep(now);
        Ok(())
    }

    async fn set_remove(&self, key: &str, member: &str) -> Result<(), StoreError> {
        let mut maps = self.inner.lock();
        if let Some(members) = maps.sets.get_mut(key) {
            members.remove(member);
            if members.is_empty() {
                maps.sets.remove(key);
            }
        }
        Ok(())
    }

    async fn set_members(&self, key: &str) -> Result<Vec<String>, StoreError> {
        let now = self.clock.now();
        let maps = self.inner.lock();
        Ok(maps
            .sets
            .get(key)
            .map(|members| {
                members
                    .iter()
                    .filter(|(_, expires)| **expires > now)
                    .map(|(m, _)| m.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn sweep(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        self.inner.lock().sweep(now);
        Ok(())
    }
}
