//! Routing rules: which version a request gets when it names none (docs/configuration.md, `[routing.<model>]`).
//!
//! A request is mapped to one of 100 [`Bucket`]s: the SHA-256 of its routing key (the client's
//! `X-Request-ID`) when it has one, so a client that repeats its id keeps its version, otherwise
//! a random bucket. A rule then turns the bucket into a version:
//!
//! - `static`: always the same version;
//! - `canary`: buckets `0..percent` go to the canary, so exactly `percent` of 100 buckets do;
//! - `ab`: the variants, in the order written, own consecutive ranges of buckets as wide as
//!   their weights.
//!
//! A version that is not ready is never chosen while another version of the rule is: see
//! [`RoutingRule::route`] for the fallbacks.

use std::collections::BTreeMap;
use std::collections::btree_map;
use std::fmt;

use sha2::{Digest, Sha256};

use crate::model::{ModelName, ModelVersion};

/// Number of buckets; percentages and weights are counted in buckets.
const BUCKETS: u8 = 100;

/// One of the 100 slices of traffic, `0..100`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bucket(u8);

impl Bucket {
    /// `None` unless `value < 100`.
    pub fn new(value: u8) -> Option<Self> {
        (value < BUCKETS).then_some(Self(value))
    }

    /// The first 8 bytes of the SHA-256 of `key`, as a big-endian `u64`, modulo 100.
    pub fn from_routing_key(key: &str) -> Self {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let [b0, b1, b2, b3, b4, b5, b6, b7, ..] = digest;
        let prefix = u64::from_be_bytes([b0, b1, b2, b3, b4, b5, b6, b7]);
        Self(bucket_of(prefix))
    }

    /// A uniformly random bucket, for requests without a routing key.
    pub fn random() -> Self {
        // The low 62 bits of a v4 UUID are random, which makes the bias of `mod 100` negligible.
        let random = uuid::Uuid::new_v4().as_u128() as u64;
        Self(bucket_of(random))
    }

    /// The bucket of `routing_key` when there is one, else a random bucket.
    pub fn for_request(routing_key: Option<&str>) -> Self {
        routing_key.map_or_else(Self::random, Self::from_routing_key)
    }

    pub fn value(self) -> u8 {
        self.0
    }
}

fn bucket_of(value: u64) -> u8 {
    // Always below 100, so the narrowing cannot lose anything.
    (value % u64::from(BUCKETS)) as u8
}

/// Why a rule could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    #[error("canary_percent must be between 0 and 100, got {percent}")]
    PercentOutOfRange { percent: u8 },
    #[error("primary and canary are the same version \"{version}\"")]
    CanaryIsPrimary { version: ModelVersion },
    #[error("at least one variant is required")]
    NoVariants,
    #[error("variant \"{version}\" has weight 0; every weight must be at least 1")]
    ZeroWeight { version: ModelVersion },
    #[error("variant \"{version}\" is listed twice")]
    DuplicateVariant { version: ModelVersion },
    #[error("weights sum to {sum}, must be 100")]
    WeightSum { sum: u32 },
}

/// The variants of an A/B rule: in the order written, distinct, each weight at least 1 and the
/// weights summing to exactly 100.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbVariants(Vec<(ModelVersion, u8)>);

impl AbVariants {
    pub fn new(variants: Vec<(ModelVersion, u8)>) -> Result<Self, RoutingError> {
        if variants.is_empty() {
            return Err(RoutingError::NoVariants);
        }
        for (index, (version, weight)) in variants.iter().enumerate() {
            if *weight == 0 {
                return Err(RoutingError::ZeroWeight {
                    version: version.clone(),
                });
            }
            if variants[..index]
                .iter()
                .any(|(earlier, _)| earlier == version)
            {
                return Err(RoutingError::DuplicateVariant {
                    version: version.clone(),
                });
            }
        }
        let sum: u32 = variants.iter().map(|(_, weight)| u32::from(*weight)).sum();
        if sum != u32::from(BUCKETS) {
            return Err(RoutingError::WeightSum { sum });
        }
        Ok(Self(variants))
    }

    pub fn as_slice(&self) -> &[(ModelVersion, u8)] {
        &self.0
    }

    /// The variant owning `bucket`: the first whose cumulative weight exceeds it.
    fn owner(&self, bucket: Bucket) -> &ModelVersion {
        let mut cumulative: u32 = 0;
        for (version, weight) in &self.0 {
            cumulative += u32::from(*weight);
            if u32::from(bucket.value()) < cumulative {
                return version;
            }
        }
        // Unreachable while the weights sum to 100; the last variant is the natural owner.
        &self.0[self.0.len() - 1].0
    }
}

/// How a model's version is picked when a request names none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingRule {
    Static {
        version: ModelVersion,
    },
    /// `percent` of the buckets go to `canary`. Build it with [`RoutingRule::canary`], which
    /// checks `percent <= 100`; a larger value would simply send everything to the canary.
    Canary {
        primary: ModelVersion,
        canary: ModelVersion,
        percent: u8,
    },
    Ab {
        variants: AbVariants,
    },
}

impl RoutingRule {
    pub fn canary(
        primary: ModelVersion,
        canary: ModelVersion,
        percent: u8,
    ) -> Result<Self, RoutingError> {
        if percent > BUCKETS {
            return Err(RoutingError::PercentOutOfRange { percent });
        }
        if primary == canary {
            return Err(RoutingError::CanaryIsPrimary { version: primary });
        }
        Ok(Self::Canary {
            primary,
            canary,
            percent,
        })
    }

    pub fn ab(variants: Vec<(ModelVersion, u8)>) -> Result<Self, RoutingError> {
        AbVariants::new(variants).map(|variants| Self::Ab { variants })
    }

    /// The version for a request in `bucket`.
    ///
    /// Versions for which `is_ready` is false are avoided while the rule has a ready one:
    /// - `static`: its version, ready or not (there is no other).
    /// - `canary`: the canary when `bucket < percent` and the canary is ready, otherwise the
    ///   primary. When the primary is not ready but the canary is, the canary serves everything
    ///   rather than failing the request. When neither is ready: the primary.
    /// - `ab`: the variant owning the bucket; if it is not ready, the first ready variant in the
    ///   order written; if none is ready, the owner anyway.
    ///
    /// When nothing is ready the returned version is not ready either, and the caller reports
    /// `not_ready` for it.
    pub fn route(&self, bucket: Bucket, is_ready: impl Fn(&ModelVersion) -> bool) -> ModelVersion {
        match self {
            Self::Static { version } => version.clone(),
            Self::Canary {
                primary,
                canary,
                percent,
            } => {
                let canary_ready = is_ready(canary);
                let to_canary = bucket.value() < *percent;
                if canary_ready && (to_canary || !is_ready(primary)) {
                    canary.clone()
                } else {
                    primary.clone()
                }
            }
            Self::Ab { variants } => {
                let owner = variants.owner(bucket);
                if is_ready(owner) {
                    return owner.clone();
                }
                variants
                    .as_slice()
                    .iter()
                    .map(|(version, _)| version)
                    .find(|version| is_ready(version))
                    .unwrap_or(owner)
                    .clone()
            }
        }
    }

    /// Every version the rule can route to, in the order written.
    pub fn versions(&self) -> Vec<&ModelVersion> {
        match self {
            Self::Static { version } => vec![version],
            Self::Canary {
                primary, canary, ..
            } => vec![primary, canary],
            Self::Ab { variants } => variants
                .as_slice()
                .iter()
                .map(|(version, _)| version)
                .collect(),
        }
    }

    /// A short human description for `GET /models/{name}/{version}`, e.g.
    /// `canary: v1, 10% to v2` or `ab: v1 70%, v2 30%`.
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for RoutingRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Static { version } => write!(f, "static: {version}"),
            Self::Canary {
                primary,
                canary,
                percent,
            } => write!(f, "canary: {primary}, {percent}% to {canary}"),
            Self::Ab { variants } => {
                f.write_str("ab: ")?;
                for (index, (version, weight)) in variants.as_slice().iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{version} {weight}%")?;
                }
                Ok(())
            }
        }
    }
}

/// The routing rule of each model that has one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingTable {
    rules: BTreeMap<ModelName, RoutingRule>,
}

impl RoutingTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the rule of `name`, returning the one it replaces.
    pub fn insert(&mut self, name: ModelName, rule: RoutingRule) -> Option<RoutingRule> {
        self.rules.insert(name, rule)
    }

    pub fn get(&self, name: &ModelName) -> Option<&RoutingRule> {
        self.rules.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rules by model name, in name order.
    pub fn iter(&self) -> btree_map::Iter<'_, ModelName, RoutingRule> {
        self.rules.iter()
    }
}

impl FromIterator<(ModelName, RoutingRule)> for RoutingTable {
    fn from_iter<I: IntoIterator<Item = (ModelName, RoutingRule)>>(iter: I) -> Self {
        Self {
            rules: iter.into_iter().collect(),
        }
    }
}

impl<'a> IntoIterator for &'a RoutingTable {
    type Item = (&'a ModelName, &'a RoutingRule);
    type IntoIter = btree_map::Iter<'a, ModelName, RoutingRule>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn version(value: &str) -> ModelVersion {
        ModelVersion::parse(value).expect("valid version")
    }

    fn bucket(value: u8) -> Bucket {
        Bucket::new(value).expect("bucket below 100")
    }

    fn all_buckets() -> impl Iterator<Item = Bucket> {
        (0..100).map(bucket)
    }

    fn always_ready(_: &ModelVersion) -> bool {
        true
    }

    fn canary_10() -> RoutingRule {
        RoutingRule::canary(version("v1"), version("v2"), 10).expect("valid canary")
    }

    fn ab_70_30() -> RoutingRule {
        RoutingRule::ab(vec![(version("v1"), 70), (version("v2"), 30)]).expect("valid ab")
    }

    #[test]
    fn bucket_of_a_key_is_the_big_endian_sha256_prefix_mod_100() {
        // SHA-256("abc") = ba7816bf 8f01cfea 414140de ... (FIPS 180-2 test vector).
        let prefix = u64::from_be_bytes([0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea]);
        let expected = u8::try_from(prefix % 100).expect("below 100");

        assert_eq!(Bucket::from_routing_key("abc").value(), expected);
        assert_eq!(expected, 74);
    }

    #[test]
    fn buckets_exist_only_below_100() {
        assert_eq!(Bucket::new(99).map(Bucket::value), Some(99));
        assert_eq!(Bucket::new(100), None);
        assert!((0..1_000).all(|_| Bucket::random().value() < 100));
    }

    #[test]
    fn random_buckets_cover_the_whole_range() {
        let seen: BTreeSet<u8> = (0..20_000).map(|_| Bucket::random().value()).collect();
        assert_eq!(seen.len(), 100);
    }

    #[test]
    fn a_request_without_routing_key_still_gets_a_bucket() {
        assert_eq!(
            Bucket::for_request(Some("abc")),
            Bucket::from_routing_key("abc")
        );
        assert!(Bucket::for_request(None).value() < 100);
    }

    #[test]
    fn static_rule_always_returns_its_version_even_when_not_ready() {
        let rule = RoutingRule::Static {
            version: version("v3"),
        };
        assert!(all_buckets().all(|b| rule.route(b, always_ready) == version("v3")));
        assert_eq!(rule.route(bucket(0), |_| false), version("v3"));
    }

    #[test]
    fn canary_of_10_percent_takes_exactly_10_of_the_100_buckets() {
        let rule = canary_10();
        let to_canary: Vec<u8> = all_buckets()
            .filter(|b| rule.route(*b, always_ready) == version("v2"))
            .map(Bucket::value)
            .collect();
        assert_eq!(to_canary, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn canary_of_0_and_100_percent_send_none_and_everything() {
        let none = RoutingRule::canary(version("v1"), version("v2"), 0).expect("valid");
        let all = RoutingRule::canary(version("v1"), version("v2"), 100).expect("valid");
        assert!(all_buckets().all(|b| none.route(b, always_ready) == version("v1")));
        assert!(all_buckets().all(|b| all.route(b, always_ready) == version("v2")));
    }

    #[test]
    fn canary_that_is_not_ready_falls_back_to_the_primary() {
        let rule = canary_10();
        let ready = |v: &ModelVersion| v.as_str() == "v1";
        assert!(all_buckets().all(|b| rule.route(b, ready) == version("v1")));
    }

    #[test]
    fn primary_that_is_not_ready_yields_to_a_ready_canary() {
        let rule = canary_10();
        let ready = |v: &ModelVersion| v.as_str() == "v2";
        assert!(all_buckets().all(|b| rule.route(b, ready) == version("v2")));
    }

    #[test]
    fn canary_rule_with_nothing_ready_returns_the_primary() {
        let rule = canary_10();
        assert!(all_buckets().all(|b| rule.route(b, |_| false) == version("v1")));
    }

    #[test]
    fn canary_rejects_percentages_over_100_and_a_canary_equal_to_the_primary() {
        assert_eq!(
            RoutingRule::canary(version("v1"), version("v2"), 101),
            Err(RoutingError::PercentOutOfRange { percent: 101 })
        );
        assert_eq!(
            RoutingRule::canary(version("v1"), version("v1"), 10),
            Err(RoutingError::CanaryIsPrimary {
                version: version("v1")
            })
        );
    }

    #[test]
    fn ab_buckets_follow_the_cumulative_weights_in_the_order_written() {
        let rule = ab_70_30();
        assert_eq!(rule.route(bucket(0), always_ready), version("v1"));
        assert_eq!(rule.route(bucket(69), always_ready), version("v1"));
        assert_eq!(rule.route(bucket(70), always_ready), version("v2"));
        assert_eq!(rule.route(bucket(99), always_ready), version("v2"));

        let reversed =
            RoutingRule::ab(vec![(version("v2"), 30), (version("v1"), 70)]).expect("valid ab");
        assert_eq!(reversed.route(bucket(0), always_ready), version("v2"));
        assert_eq!(reversed.route(bucket(30), always_ready), version("v1"));
    }

    #[test]
    fn ab_70_30_over_random_request_ids_is_within_5_points_and_sticky() {
        let rule = ab_70_30();
        let keys: Vec<String> = (0..2_000)
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        let to_v1 = keys
            .iter()
            .filter(|key| rule.route(Bucket::from_routing_key(key), always_ready) == version("v1"))
            .count();
        let share = to_v1 as f64 / keys.len() as f64 * 100.0;
        assert!((65.0..=75.0).contains(&share), "v1 got {share:.1}%");

        for key in &keys[..100] {
            let first = rule.route(Bucket::from_routing_key(key), always_ready);
            let again = rule.route(Bucket::from_routing_key(key), always_ready);
            assert_eq!(first, again);
        }
    }

    #[test]
    fn ab_variant_that_is_not_ready_falls_back_to_the_first_ready_variant() {
        let rule = RoutingRule::ab(vec![
            (version("v1"), 50),
            (version("v2"), 25),
            (version("v3"), 25),
        ])
        .expect("valid ab");
        let v1_down = |v: &ModelVersion| v.as_str() != "v1";
        assert_eq!(rule.route(bucket(0), v1_down), version("v2"));
        assert_eq!(rule.route(bucket(80), v1_down), version("v3"));

        let only_v3 = |v: &ModelVersion| v.as_str() == "v3";
        assert_eq!(rule.route(bucket(0), only_v3), version("v3"));
        assert_eq!(rule.route(bucket(60), only_v3), version("v3"));
    }

    #[test]
    fn ab_rule_with_nothing_ready_returns_the_bucket_owner() {
        let rule = ab_70_30();
        assert_eq!(rule.route(bucket(10), |_| false), version("v1"));
        assert_eq!(rule.route(bucket(90), |_| false), version("v2"));
    }

    #[test]
    fn ab_variants_must_be_positive_distinct_and_sum_to_100() {
        assert_eq!(RoutingRule::ab(vec![]), Err(RoutingError::NoVariants));
        assert_eq!(
            RoutingRule::ab(vec![(version("v1"), 70), (version("v2"), 20)]),
            Err(RoutingError::WeightSum { sum: 90 })
        );
        assert_eq!(
            RoutingRule::ab(vec![(version("v1"), 100), (version("v2"), 0)]),
            Err(RoutingError::ZeroWeight {
                version: version("v2")
            })
        );
        assert_eq!(
            RoutingRule::ab(vec![(version("v1"), 50), (version("v1"), 50)]),
            Err(RoutingError::DuplicateVariant {
                version: version("v1")
            })
        );
        assert_eq!(
            RoutingError::WeightSum { sum: 90 }.to_string(),
            "weights sum to 90, must be 100"
        );
    }

    #[test]
    fn rules_list_their_versions_and_describe_themselves() {
        let fixed = RoutingRule::Static {
            version: version("v3"),
        };
        assert_eq!(fixed.versions(), vec![&version("v3")]);
        assert_eq!(fixed.describe(), "static: v3");

        assert_eq!(canary_10().versions(), vec![&version("v1"), &version("v2")]);
        assert_eq!(canary_10().describe(), "canary: v1, 10% to v2");

        assert_eq!(ab_70_30().versions(), vec![&version("v1"), &version("v2")]);
        assert_eq!(ab_70_30().to_string(), "ab: v1 70%, v2 30%");
    }

    #[test]
    fn routing_table_finds_rules_by_model_name() {
        let echo = ModelName::parse("echo").expect("valid name");
        let table: RoutingTable = [(echo.clone(), canary_10())].into_iter().collect();

        assert!(RoutingTable::new().is_empty());
        assert!(!table.is_empty());
        assert_eq!(table.len(), 1);
        assert_eq!(table.get(&echo), Some(&canary_10()));
        assert_eq!(
            table.get(&ModelName::parse("other").expect("valid name")),
            None
        );
        assert_eq!(
            table.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            [&echo]
        );
    }
}
