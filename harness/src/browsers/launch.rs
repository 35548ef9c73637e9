//! Starting a headless browser on a fresh temporary profile, with no traffic beyond 127.0.0.1
//! (flags and prefs measured in shared/notes BROWSERS.md), in its own process group; waiting
//! for the page's report; ending the browser by killing the group it started.

use crate::serve::RunningServer;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A browser the runner drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Browser {
    Chromium,
    Firefox,
}

/// Chromium flags that keep it off the network (BROWSERS.md, strace-checked).
pub const CHROMIUM_QUIET_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--log-level=3",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-client-side-phishing-detection",
    "--disable-domain-reliability",
    "--no-pings",
    "--metrics-recording-only",
    "--disable-field-trial-config",
    "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,OptimizationGuideModelDownloading,OptimizationHintsFetching,OptimizationTargetPrediction,OptimizationGuideOnDeviceModel,Translate,MediaRouter,AutofillServerCommunication,CertificateTransparencyComponentUpdater",
    "--gaia-url=http://127.0.0.1:9/",
    "--component-updater=url-source=http://127.0.0.1:9/",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
];

/// Firefox prefs (user.js) that keep it off the network (BROWSERS.md, plus the unified-ads and
/// context-id prefs and a loopback telemetry server: without them Firefox 153 looked up
/// ads.mozilla.org and incoming.telemetry.mozilla.org, strace-checked), and
/// `dom.allow_scripts_to_close_windows` so the page can end the run with `window.close()`.
pub const FIREFOX_USER_JS: &str = r#"user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("services.settings.server", "data:,#remote-settings-dummy/v1");
user_pref("network.trr.mode", 5);
user_pref("network.dns.native_https_query", false);
user_pref("dom.push.connection.enabled", false);
user_pref("dom.push.enabled", false);
user_pref("app.update.disabledForTesting", true);
user_pref("app.update.auto", false);
user_pref("app.normandy.enabled", false);
user_pref("app.shield.optoutstudies.enabled", false);
user_pref("media.gmp-manager.url", "data:application/json,");
user_pref("media.gmp-gmpopenh264.enabled", false);
user_pref("geo.provider.network.url", "");
user_pref("browser.region.network.url", "");
user_pref("browser.region.update.enabled", false);
user_pref("browser.newtabpage.enabled", false);
user_pref("browser.newtabpage.activity-stream.default.sites", "");
user_pref("browser.newtabpage.activity-stream.feeds.topsites", false);
user_pref("browser.newtabpage.activity-stream.feeds.system.topstories", false);
user_pref("browser.newtabpage.activity-stream.feeds.section.topstories", false);
user_pref("browser.newtabpage.activity-stream.telemetry", false);
user_pref("browser.newtabpage.activity-stream.unifiedAds.endpoint", "data:,");
user_pref("browser.newtabpage.activity-stream.unifiedAds.tiles.enabled", false);
user_pref("browser.newtabpage.activity-stream.unifiedAds.spocs.enabled", false);
user_pref("browser.newtabpage.activity-stream.showSponsored", false);
user_pref("browser.newtabpage.activity-stream.showSponsoredTopSites", false);
user_pref("browser.contextual-services.contextId.rotation-in-days", 0);
user_pref("browser.contextual-services.contextId.rust-component.enabled", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("browser.startup.page", 0);
user_pref("browser.aboutwelcome.enabled", false);
user_pref("toolkit.telemetry.enabled", false);
user_pref("toolkit.telemetry.unified", false);
user_pref("toolkit.telemetry.archive.enabled", false);
user_pref("toolkit.telemetry.server", "http://127.0.0.1:9");
user_pref("telemetry.fog.test.localhost_port", -1);
user_pref("datareporting.usage.uploadEnabled", false);
user_pref("datareporting.healthreport.uploadEnabled", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("browser.safebrowsing.malware.enabled", false);
user_pref("browser.safebrowsing.phishing.enabled", false);
user_pref("browser.safebrowsing.blockedURIs.enabled", false);
user_pref("browser.safebrowsing.downloads.enabled", false);
user_pref("browser.safebrowsing.downloads.remote.enabled", false);
user_pref("browser.safebrowsing.provider.google.updateURL", "");
user_pref("browser.safebrowsing.provider.google4.updateURL", "");
user_pref("extensions.update.enabled", false);
user_pref("extensions.update.autoUpdateDefault", false);
user_pref("extensions.getAddons.cache.enabled", false);
user_pref("extensions.systemAddon.update.enabled", false);
user_pref("extensions.blocklist.enabled", false);
user_pref("network.http.speculative-parallel-limit", 0);
user_pref("network.prefetch-next", false);
user_pref("network.dns.disablePrefetch", true);
user_pref("network.predictor.enabled", false);
user_pref("browser.urlbar.speculativeConnect.enabled", false);
user_pref("browser.places.speculativeConnect.enabled", false);
user_pref("browser.ping-centre.telemetry", false);
user_pref("network.proxy.type", 0);
user_pref("dom.allow_scripts_to_close_windows", true);
"#;

impl Browser {
    /// "chromium" or "firefox".
    pub fn name(self) -> &'static str {
        match self {
            Browser::Chromium => "chromium",
            Browser::Firefox => "firefox",
        }
    }

    /// The installed executable (the real Chromium binary, not its shell wrapper).
    pub fn find(self) -> Option<PathBuf> {
        let candidates: &[&str] = match self {
            Browser::Chromium => &["/usr/lib/chromium/chromium"],
            Browser::Firefox => &["/usr/lib/firefox-esr/firefox-esr", "/usr/bin/firefox-esr"],
        };
        candidates.iter().map(PathBuf::from).find(|p| p.is_file())
    }

    /// The command that opens `url` headless on the profile in `tmp`; with `screenshot`, it
    /// saves a PNG of the page at its load event and exits.
    pub fn command(self, exe: &Path, tmp: &Path, url: &str, screenshot: Option<&Path>) -> Command {
        let mut cmd = Command::new(exe);
        let profile = tmp.join("profile");
        cmd.env("XDG_CONFIG_HOME", tmp.join("xdg-config"))
            .env("XDG_CACHE_HOME", tmp.join("xdg-cache"))
            .env("HOME", tmp);
        match self {
            Browser::Chromium => {
                cmd.args(CHROMIUM_QUIET_FLAGS)
                    .arg(format!("--user-data-dir={}", profile.display()));
                if let Some(png) = screenshot {
                    cmd.arg(format!("--screenshot={}", png.display()))
                        .arg("--window-size=1000,1150")
                        .arg("--hide-scrollbars");
                }
            }
            Browser::Firefox => {
                cmd.env("MOZ_REMOTE_SETTINGS_DEVTOOLS", "1")
                    .env("MOZ_CRASHREPORTER_DISABLE", "1")
                    .env("MOZ_HEADLESS", "1")
                    .args(["--headless", "--no-remote", "--profile"])
                    .arg(&profile);
                if let Some(png) = screenshot {
                    cmd.arg("--screenshot")
                        .arg(png)
                        .arg("--window-size=1000,1150");
                }
            }
        }
        cmd.arg(url);
        cmd
    }
}

/// A fresh id for one browser run (reports and `/hold` carry it).
pub fn run_id(engine: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{engine}-{}-{nanos}", std::process::id())
}

/// A temporary directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory under the system's temporary directory.
    pub fn new(tag: &str) -> Result<TempDir> {
        let dir = std::env::temp_dir().join(format!("trlm-{}", run_id(tag)));
        std::fs::create_dir_all(dir.join("profile"))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A browser in its own process group; the group is killed when dropped.
pub struct Running {
    child: Child,
}

impl Running {
    /// Starts `cmd` as the leader of a new process group, its output discarded.
    pub fn start(mut cmd: Command) -> Result<Running> {
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the browser")?;
        Ok(Running { child })
    }

    /// Waits up to `timeout` for the browser to exit by itself; true when it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Kills the process group the browser leads (TERM, a grace of 2 s, then KILL for any
    /// helper left in the group) and reaps the browser.
    pub fn end(&mut self) {
        let group = format!("-{}", self.child.id());
        let signal = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        signal("-TERM");
        self.wait_exit(Duration::from_secs(2));
        signal("-KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.end();
    }
}

/// Opens `url` in `browser` and collects the reports of run `run_id` until the final one (or
/// the timeout), then ends the browser. Returns every report of the run, in arrival order.
pub fn run_until_report(
    browser: Browser,
    exe: &Path,
    server: &RunningServer,
    url: &str,
    run_id: &str,
    timeout: Duration,
) -> Result<Vec<Value>> {
    let tmp = TempDir::new(browser.name())?;
    if browser == Browser::Firefox {
        std::fs::write(tmp.0.join("profile/user.js"), FIREFOX_USER_JS)?;
    }
    let mut running = Running::start(browser.command(exe, &tmp.0, url, None))?;
    let deadline = Instant::now() + timeout;
    let mut reports = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match server.reports().recv_timeout(left) {
            Ok(r) if r["run"] == run_id => {
                let last = r["kind"] == "final";
                reports.push(r);
                if last {
                    break;
                }
            }
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => bail!("the server stopped"),
        }
    }
    // window.close() ends a browser about 0.3 s (Chromium) to 1.2 s (Firefox) later.
    running.wait_exit(Duration::from_secs(3));
    running.end();
    Ok(reports)
}

/// Saves `DIR/BROWSER.png`: the page after it loaded the default model and generated once.
pub fn screenshot(
    browser: Browser,
    exe: &Path,
    server: &RunningServer,
    dir: &Path,
    timeout: Duration,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let png = dir.canonicalize()?.join(format!("{}.png", browser.name()));
    let _ = std::fs::remove_file(&png);
    let tmp = TempDir::new(browser.name())?;
    if browser == Browser::Firefox {
        std::fs::write(tmp.0.join("profile/user.js"), FIREFOX_USER_JS)?;
    }
    let run = run_id(browser.name());
    let url = server.url(&format!("/?demo=1&run={run}"));
    let mut running = Running::start(browser.command(exe, &tmp.0, &url, Some(&png)))?;
    let exited = running.wait_exit(timeout);
    running.end();
    if !png.is_file() {
        bail!(
            "{} wrote no screenshot{}",
            browser.name(),
            if exited { "" } else { " before the timeout" }
        );
    }
    Ok(png)
}
