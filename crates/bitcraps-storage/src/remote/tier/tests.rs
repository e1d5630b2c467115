//! Unit tests of the Redis tier against the shared Redis: fills, generations, restarts.

//! The protocol driven step by step against a real Redis (skipped without
//! `BITCRAPS_TEST_REDIS_URL`): each test stages a race the integration tests can only
//! reach by chance.

use super::*;
use crate::config::RedisConfig;

type TestResult = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

struct Setup {
    tier: Arc<RemoteTier>,
    admin: redis::Connection,
    namespace: String,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.namespace))
            .query(&mut self.admin)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut self.admin);
        }
    }
}

fn setup(
    test: &str,
) -> std::result::Result<Option<Setup>, Box<dyn std::error::Error + Send + Sync>> {
    let Some(url) = std::env::var("BITCRAPS_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        if std::env::var_os("BITCRAPS_TEST_REQUIRE_SERVICES").is_some_and(|v| !v.is_empty()) {
            return Err(
                "BITCRAPS_TEST_REDIS_URL is not set and BITCRAPS_TEST_REQUIRE_SERVICES \
                        forbids skipping"
                    .into(),
            );
        }
        eprintln!("skipped: BITCRAPS_TEST_REDIS_URL is not set");
        return Ok(None);
    };
    let namespace = format!("bitcraps-test:unit:{test}:{}", protocol::unique_token());
    let config = StorageConfig::builder()
        .redis(
            RedisConfig::default()
                .url(url.clone())
                .namespace(namespace.clone())
                .timeout(Duration::from_secs(2)),
        )
        .build()?;
    let identity = StoreIdentity::random()?;
    let tier = RemoteTier::start(&config, &url, Arc::new(ValueCache::new(0)), &identity)?;
    let admin =
        redis::Client::open(url.as_str())?.get_connection_with_timeout(Duration::from_secs(2))?;
    Ok(Some(Setup {
        tier: Arc::new(tier),
        admin,
        namespace,
    }))
}

async fn write(tier: &Arc<RemoteTier>, key: &str) -> TestResult {
    let (tier, key) = (Arc::clone(tier), key.to_owned());
    tokio::task::spawn_blocking(move || tier.invalidate_after_commit(vec![key])).await?;
    Ok(())
}

async fn observe(tier: &RemoteTier, key: &str) -> std::result::Result<Observed, String> {
    match tier.lookup(key).await {
        Lookup::Miss(observed) => Ok(observed),
        Lookup::Hit(..) => Err("unexpected hit".into()),
        Lookup::Unavailable => Err("redis unavailable".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_observed_before_a_write_is_refused() -> TestResult {
    let Some(s) = setup("write")? else {
        return Ok(());
    };
    let observed = observe(&s.tier, "c\0k").await?;
    write(&s.tier, "c\0k").await?;
    s.tier.fill("c\0k", observed, b"old", None).await;
    let stats = s.tier.statistics().await;
    assert_eq!((stats.fills, stats.raced_fills), (0, 1));
    assert_eq!(stats.invalidations_sent, 1);
    // A fresh observation fills, and the next lookup hits.
    let observed = observe(&s.tier, "c\0k").await?;
    s.tier.fill("c\0k", observed, b"new", None).await;
    assert!(matches!(s.tier.lookup("c\0k").await, Lookup::Hit(raw, ..) if &*raw == b"new"));
    Ok(())
}

/// A generation that expired and was re-created must not repeat an earlier value (with a
/// plain `INCR` both would be 1 and the stale fill would land).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_generation_never_repeats() -> TestResult {
    let Some(mut s) = setup("aba")? else {
        return Ok(());
    };
    write(&s.tier, "c\0k").await?;
    let observed = observe(&s.tier, "c\0k").await?;
    assert!(!observed.generation.is_empty());
    // The generation expires, then another write happens.
    redis::cmd("DEL")
        .arg(format!("{}:gen:c\0k", s.namespace))
        .query::<()>(&mut s.admin)?;
    write(&s.tier, "c\0k").await?;
    s.tier.fill("c\0k", observed, b"stale", None).await;
    assert_eq!(s.tier.statistics().await.raced_fills, 1);
    assert!(matches!(s.tier.lookup("c\0k").await, Lookup::Miss(_)));
    Ok(())
}

/// A Redis restart (here: the epoch vanishing) defeats fills observed before it, even
/// when the generation looks the same (both missing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_across_a_restart_is_refused() -> TestResult {
    let Some(mut s) = setup("epoch")? else {
        return Ok(());
    };
    let observed = observe(&s.tier, "c\0k").await?;
    redis::cmd("DEL")
        .arg(format!("{}:epoch", s.namespace))
        .query::<()>(&mut s.admin)?;
    s.tier.fill("c\0k", observed, b"stale", None).await;
    assert_eq!(s.tier.statistics().await.raced_fills, 1);
    Ok(())
}
