//! The `Sforce-Limit-Info` header (docs/salesforce-api.md §4): `api-usage=18/5000`, optionally
//! followed by `; per-app-api-usage=17/250(appName=x)` and `; api-bursts=1/750`.

use serde::{Deserialize, Serialize};

/// The org's daily API usage as last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiUsage {
    /// Requests counted in the rolling 24 hours.
    pub used: u64,
    /// The org's allocation.
    pub max: u64,
}

impl ApiUsage {
    /// Parses the header; `None` when it has no `api-usage` part.
    pub fn parse(header: &str) -> Option<ApiUsage> {
        header.split(';').find_map(|part| {
            let value = part.trim().strip_prefix("api-usage=")?;
            let (used, max) = value.split_once('/')?;
            let max: String = max.chars().take_while(char::is_ascii_digit).collect();
            Some(ApiUsage {
                used: used.trim().parse().ok()?,
                max: max.parse().ok()?,
            })
        })
    }

    /// Remaining requests.
    pub fn remaining(&self) -> u64 {
        self.max.saturating_sub(self.used)
    }

    /// Whether usage has reached the last `reserve_percent` % of the allocation.
    pub fn over_reserve(&self, reserve_percent: u8) -> bool {
        if reserve_percent == 0 || self.max == 0 {
            return self.max > 0 && self.used >= self.max;
        }
        let reserve = self.max.saturating_mul(u64::from(reserve_percent.min(100))) / 100;
        self.remaining() <= reserve
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_forms() {
        assert_eq!(
            ApiUsage::parse("api-usage=18/5000"),
            Some(ApiUsage {
                used: 18,
                max: 5000
            })
        );
        assert_eq!(
            ApiUsage::parse(
                "api-usage=18/5000; per-app-api-usage=17/250(appName=sample-connected-app)"
            ),
            Some(ApiUsage {
                used: 18,
                max: 5000
            })
        );
        assert_eq!(
            ApiUsage::parse(
                "per-app-api-usage=17/250(appName=x); api-usage=2/15000; api-bursts=1/750"
            ),
            Some(ApiUsage {
                used: 2,
                max: 15000
            })
        );
        assert_eq!(ApiUsage::parse("garbage"), None);
        assert_eq!(ApiUsage::parse("api-usage=x/1"), None);
    }

    #[test]
    fn reserve() {
        let u = ApiUsage { used: 94, max: 100 };
        assert!(!u.over_reserve(5));
        assert!(ApiUsage { used: 95, max: 100 }.over_reserve(5));
        assert!(!ApiUsage { used: 99, max: 100 }.over_reserve(0));
        assert!(
            ApiUsage {
                used: 100,
                max: 100
            }
            .over_reserve(0)
        );
        assert_eq!(u.remaining(), 6);
    }
}
