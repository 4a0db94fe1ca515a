//! Maps and sets with a fixed hash seed: their iteration order depends only on what was put
//! in them, so a simulation replays exactly from its seed. (Keys are session ids this layer
//! drew or peers sent, and addresses: nothing a client can choose to collide.)

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, DefaultHasher};

/// A `HashMap` with a fixed seed.
pub(crate) type Map<K, V> = HashMap<K, V, BuildHasherDefault<DefaultHasher>>;
/// A `HashSet` with a fixed seed.
pub(crate) type Set<T> = HashSet<T, BuildHasherDefault<DefaultHasher>>;
