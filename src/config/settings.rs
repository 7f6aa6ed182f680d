//! The core's settings, read from a config: the one place the pure decisions (`core::classify`,
//! `core::policy`, `core::dispatch`, `core::mapping`) meet `Config`. The core never names the
//! config; the config builds what the core reads.

use super::{ApiConfig, Config};
use crate::core::classify::Rules;
use crate::core::dispatch::Limits;
use crate::core::mapping::RequestPlan;
use crate::core::policy::Settings;

impl Rules {
    /// The rules of a config.
    pub fn from_config(config: &Config) -> Rules {
        let auth = &config.api.auth;
        Rules::new(
            &auth.user_not_found_patterns,
            &auth.invalid_credentials_patterns,
            config.api.response.clone(),
        )
    }
}

impl Default for Rules {
    /// The rules of the default config (its pt-BR and English credential patterns).
    fn default() -> Self {
        Rules::from_config(&Config::default())
    }
}

impl Settings {
    /// The settings of a config.
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            max_attempts: config.retry.max_attempts,
            first_delay: config.retry.first_delay.get(),
            max_delay: config.retry.max_delay.get(),
            async_poll_interval: config.api.async_poll_interval.get(),
            async_max_wait: config.api.async_max_wait.get(),
        }
    }
}

impl Limits {
    /// The limits of a config.
    pub fn from_config(config: &Config) -> Limits {
        Limits {
            settings: Settings::from_config(config),
            concurrency: usize::try_from(config.api.concurrency).unwrap_or(1).max(1),
            max_rate: config.api.max_rate,
        }
    }
}

impl ApiConfig {
    /// The request plan of `[api]`: `[api.request]`, or the original request to `api.url`.
    pub fn request_plan(&self, zone: jiff::tz::TimeZone) -> RequestPlan {
        RequestPlan::new(&self.request, &self.url, &self.response, zone)
    }
}
