//! Attribute storage: a room's attributes with their owners, their bounds and the checks of a
//! key and value. The requests that change them are in `attributes.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::wire::{AttributeFailure, AttributeOp, ErrorBody, ErrorCode};

/// Bounds of room and member attributes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttrLimits {
    pub max_keys: usize,
    pub max_key: usize,
    pub max_value: usize,
    pub max_total: usize,
}

#[derive(Clone, Debug)]
struct RoomAttr {
    value: String,
    owner: Arc<str>,
    delete_with_owner: bool,
}

/// A room's attributes: key -> value with its owner.
#[derive(Clone, Debug, Default)]
pub(crate) struct Attrs {
    map: BTreeMap<String, RoomAttr>,
}

/// What an applied change did, for the event.
#[derive(Debug, Default)]
pub(crate) struct Change {
    pub set: Vec<(String, String)>,
    pub deleted: Vec<String>,
    pub failed: Vec<AttributeFailure>,
}

pub(crate) fn check_key_value(
    key: &str,
    value: Option<&str>,
    l: AttrLimits,
) -> Result<(), ErrorBody> {
    if key.is_empty() {
        return Err(ErrorBody::with_message(ErrorCode::InvalidRequest, "empty attribute key"));
    }
    if key.len() > l.max_key {
        return Err(ErrorBody::with_message(
            ErrorCode::AttributeKeyTooLong,
            format!("key of {} bytes is over {}", key.len(), l.max_key),
        ));
    }
    if let Some(v) = value {
        if v.len() > l.max_value {
            return Err(ErrorBody::with_message(
                ErrorCode::AttributeValueTooLong,
                format!("value of {key:?} has {} bytes, over {}", v.len(), l.max_value),
            ));
        }
    }
    Ok(())
}

/// Keys one request may name over all its steps (a step naming none counts as one): twice the
/// key limit, enough for a batch that deletes every key and sets as many new ones.
pub(crate) fn max_names(l: AttrLimits) -> usize {
    l.max_keys.saturating_mul(2)
}

/// The checks that need no state, made before any work: how many keys the request names, and
/// the size of each key and value.
fn check_request(ops: &[AttributeOp], l: AttrLimits) -> Result<(), ErrorBody> {
    let names: usize = ops
        .iter()
        .map(|op| match op {
            AttributeOp::Set { attributes, .. } => attributes.len().max(1),
            AttributeOp::Delete { keys, .. } => keys.len().max(1),
        })
        .sum();
    if names > max_names(l) {
        return Err(ErrorBody::with_message(
            ErrorCode::AttributeCountExceeded,
            format!("a request names {names} keys, over {}", max_names(l)),
        ));
    }
    for op in ops {
        match op {
            AttributeOp::Set { attributes, .. } => {
                for (k, v) in attributes {
                    check_key_value(k, Some(v), l)?;
                }
            }
            AttributeOp::Delete { keys, .. } => {
                for k in keys {
                    check_key_value(k, None, l)?;
                }
            }
        }
    }
    Ok(())
}

impl Attrs {
    /// Initial attributes of a new room, owned by its creator.
    pub fn initial(
        pairs: &[(String, String)],
        owner: &Arc<str>,
        l: AttrLimits,
    ) -> Result<Attrs, ErrorBody> {
        let mut attrs = Attrs::default();
        let op = AttributeOp::Set {
            attributes: pairs.to_vec(),
            is_force: true,
            is_update_owner: true,
            is_delete_after_owner_left: false,
        };
        attrs.apply(&[op], owner, |_| false, l, true)?;
        Ok(attrs)
    }

    pub fn snapshot(&self) -> Vec<(String, String)> {
        self.map.iter().map(|(k, a)| (k.clone(), a.value.clone())).collect()
    }

    fn total(map: &BTreeMap<String, RoomAttr>) -> usize {
        map.iter().map(|(k, a)| k.len() + a.value.len()).sum()
    }

    /// Applies `ops` for `caller`. A key owned by another member still in the room
    /// (`is_present`) is changed only with `is_force`; otherwise it fails: the whole request
    /// when `atomic`, that key alone when not. Validation and size limits always fail the
    /// whole request, which then changes nothing.
    pub fn apply(
        &mut self,
        ops: &[AttributeOp],
        caller: &Arc<str>,
        is_present: impl Fn(&str) -> bool,
        l: AttrLimits,
        atomic: bool,
    ) -> Result<Change, ErrorBody> {
        check_request(ops, l)?;
        let mut next = self.map.clone();
        let mut failed = Vec::new();
        let mut touched: Vec<String> = Vec::new();
        let blocked = |map: &BTreeMap<String, RoomAttr>, key: &str, force: bool| {
            !force && map.get(key).is_some_and(|a| a.owner != *caller && is_present(&a.owner))
        };
        for op in ops {
            match op {
                AttributeOp::Set {
                    attributes,
                    is_force,
                    is_update_owner,
                    is_delete_after_owner_left,
                } => {
                    for (k, v) in attributes {
                        if blocked(&next, k, *is_force) {
                            failed.push(AttributeFailure {
                                key: k.clone(),
                                code: ErrorCode::AttributeNotOwned.as_u16(),
                            });
                            continue;
                        }
                        match next.get_mut(k) {
                            Some(a) => {
                                a.value = v.clone();
                                // A key whose owner has left belongs to whoever writes it next.
                                if *is_update_owner || a.owner == *caller || !is_present(&a.owner) {
                                    a.owner = caller.clone();
                                    a.delete_with_owner = *is_delete_after_owner_left;
                                }
                            }
                            None => {
                                next.insert(
                                    k.clone(),
                                    RoomAttr {
                                        value: v.clone(),
                                        owner: caller.clone(),
                                        delete_with_owner: *is_delete_after_owner_left,
                                    },
                                );
                            }
                        }
                        if !touched.contains(k) {
                            touched.push(k.clone());
                        }
                    }
                }
                AttributeOp::Delete { keys, is_force } => {
                    for k in keys {
                        if blocked(&next, k, *is_force) {
                            failed.push(AttributeFailure {
                                key: k.clone(),
                                code: ErrorCode::AttributeNotOwned.as_u16(),
                            });
                            continue;
                        }
                        if next.remove(k).is_some() && !touched.contains(k) {
                            touched.push(k.clone());
                        }
                    }
                }
            }
        }
        if atomic && !failed.is_empty() {
            let keys: Vec<&str> = failed.iter().map(|f| f.key.as_str()).collect();
            return Err(ErrorBody::with_message(
                ErrorCode::AttributeNotOwned,
                format!("owned by other members: {}", keys.join(", ")),
            ));
        }
        if next.len() > l.max_keys {
            return Err(ErrorBody::with_message(
                ErrorCode::AttributeCountExceeded,
                format!("{} keys is over {}", next.len(), l.max_keys),
            ));
        }
        let total = Attrs::total(&next);
        if total > l.max_total {
            return Err(ErrorBody::with_message(
                ErrorCode::AttributesTooLarge,
                format!("{total} bytes of keys and values is over {}", l.max_total),
            ));
        }
        let mut change = Change { failed, ..Change::default() };
        for k in touched {
            match next.get(&k) {
                Some(a) => change.set.push((k, a.value.clone())),
                None if self.map.contains_key(&k) => change.deleted.push(k),
                None => {}
            }
        }
        self.map = next;
        Ok(change)
    }

    /// Removes the keys `user` owns that are marked delete-after-owner-left.
    pub fn remove_owned_by(&mut self, user: &str) -> Vec<String> {
        let keys: Vec<String> = self
            .map
            .iter()
            .filter(|(_, a)| a.delete_with_owner && &*a.owner == user)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &keys {
            self.map.remove(k);
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    const LIMITS: AttrLimits =
        AttrLimits { max_keys: 20, max_key: 16, max_value: 1024, max_total: 5120 };

    fn set(pairs: impl Iterator<Item = (String, String)>) -> AttributeOp {
        AttributeOp::Set {
            attributes: pairs.collect(),
            is_force: false,
            is_update_owner: false,
            is_delete_after_owner_left: false,
        }
    }

    #[test]
    fn too_many_keys_are_refused_before_any_key_is_looked_at() {
        let (alice, bob): (Arc<str>, Arc<str>) = ("alice".into(), "bob".into());
        let mut attrs = Attrs::initial(&[("b".into(), "1".into())], &bob, LIMITS).unwrap();
        let asked = Cell::new(0);
        let present = |_: &str| {
            asked.set(asked.get() + 1);
            true
        };
        // Bob's key first: applying the step would ask whether its owner is present.
        let pairs = std::iter::once(("b".to_string(), "2".to_string()))
            .chain((0..2_700).map(|i| (format!("k{i}"), "v".to_string())));
        let e = attrs.apply(&[set(pairs)], &alice, present, LIMITS, false).unwrap_err();
        assert_eq!(e.code, ErrorCode::AttributeCountExceeded.as_u16(), "{e:?}");
        assert_eq!(asked.get(), 0, "the count is checked before any key is applied");
        assert_eq!(attrs.snapshot(), [("b".to_string(), "1".to_string())]);
        // A batch may name twice the key limit (replace every key in one step): no more.
        let replace = [
            AttributeOp::Delete { keys: vec!["b".into()], is_force: true },
            set((0..20).map(|i| (format!("k{i}"), "v".to_string()))),
        ];
        assert!(attrs.apply(&replace, &alice, |_| true, LIMITS, true).is_ok());
        let over: Vec<AttributeOp> = (0..41)
            .map(|i| AttributeOp::Delete { keys: vec![format!("x{i}")], is_force: true })
            .collect();
        let e = attrs.apply(&over, &alice, |_| true, LIMITS, true).unwrap_err();
        assert_eq!(e.code, ErrorCode::AttributeCountExceeded.as_u16(), "{e:?}");
    }
}
