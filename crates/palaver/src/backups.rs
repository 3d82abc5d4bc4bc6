//! `palaver backup`, `restore`, `export` and `import FILE`: argument handling around `palaver-backup`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use palaver_backup::StderrProgress;

/// `palaver backup FILE`.
pub(crate) async fn backup(file: &Path, data_dir: &Path) -> Result<()> {
    let source = embedded_database(data_dir)?;
    let destination = file.to_path_buf();
    let summary = tokio::task::spawn_blocking(move || {
        palaver_backup::backup(&source, &destination, &mut StderrProgress::new("backup"))
    })
    .await??;
    println!(
        "backed up {} ({} pages, {} bytes, copied in {:.1} s, integrity ok) to {}",
        data_dir.join(palaver_server::DATABASE_FILE).display(),
        summary.pages,
        summary.bytes,
        summary.copy_time.as_secs_f64(),
        summary.path.display()
    );
    println!("media files are not in it: copy {} as well", data_dir.join("media").display());
    Ok(())
}

/// `palaver restore FILE`.
pub(crate) async fn restore(file: &Path, data_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let database = data_dir.join(palaver_server::DATABASE_FILE);
    let (backup, target) = (file.to_path_buf(), database.clone());
    let summary = tokio::task::spawn_blocking(move || palaver_backup::restore(&backup, &target)).await??;
    println!("restored {} ({} bytes) to {}", file.display(), summary.bytes, database.display());
    if let Some(aside) = summary.set_aside {
        println!("the database that was there is kept as {}", aside.display());
    }
    Ok(())
}

/// `palaver export FILE`.
pub(crate) async fn export(file: &Path, data_dir: &Path, database: Option<&str>) -> Result<()> {
    // The embedded database is read from a snapshot of its own, so that the export is consistent while a server
    // goes on writing; PostgreSQL is read as it is.
    let snapshot = match database {
        Some(_) => None,
        None => {
            let source = embedded_database(data_dir)?;
            let scratch = Scratch::new(data_dir)?;
            let copy = scratch.0.join(palaver_server::DATABASE_FILE);
            tokio::task::spawn_blocking(move || {
                palaver_backup::backup(&source, &copy, &mut StderrProgress::new("snapshot"))
            })
            .await??;
            Some(scratch)
        }
    };
    let read_from = snapshot.as_ref().map_or(data_dir, |s| s.0.as_path());
    let state = open(read_from, database).await?;
    let mut progress = StderrProgress::new("export");
    let counts = if file.as_os_str() == "-" {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        palaver_backup::export(state.palaver.store().as_ref(), &mut out, &mut progress).await?
    } else {
        let partial = with_suffix(file, ".partial");
        let written = async {
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(&partial).with_context(|| format!("creating {}", partial.display()))?,
            );
            let counts = palaver_backup::export(state.palaver.store().as_ref(), &mut out, &mut progress).await?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&partial, file).with_context(|| format!("writing {}", file.display()))?;
            anyhow::Ok(counts)
        }
        .await;
        if written.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        written?
    };
    drop(state);
    drop(snapshot);
    let mut report = std::io::stderr().lock();
    writeln!(
        report,
        "exported {} services, {} users, {} conversations, {} participants, {} messages ({} media records)",
        counts.services, counts.users, counts.conversations, counts.participants, counts.messages, counts.media
    )?;
    writeln!(report, "media bytes are not in the export: copy {} along", data_dir.join("media").display())?;
    Ok(())
}

/// `palaver import FILE`.
pub(crate) async fn import(file: &Path, data_dir: &Path, database: Option<&str>) -> Result<()> {
    palaver_backup::check_file(file).with_context(|| format!("reading {}", file.display()))?;
    if database.is_none() {
        let target = data_dir.join(palaver_server::DATABASE_FILE);
        if let Some((pid, program)) = palaver_backup::process_holding(&target) {
            anyhow::bail!(
                "the database {} is open in process {pid} ({program}): stop the `palaver serve` that uses this data \
                 directory first",
                target.display()
            );
        }
    }
    let state = open(data_dir, database).await?;
    let store = state.palaver.store().as_ref();
    let length = std::fs::metadata(file)?.len();
    let mut input = std::io::BufReader::new(std::fs::File::open(file)?);
    let counts = palaver_backup::import(store, &mut input, length, &mut StderrProgress::new("import"))
        .await
        .with_context(|| {
            format!(
                "importing {} (what came before the failure is in the target: start again with a new one)",
                file.display()
            )
        })?;
    println!(
        "imported {} services, {} users, {} conversations, {} participants, {} messages ({} media records)",
        counts.services, counts.users, counts.conversations, counts.participants, counts.messages, counts.media
    );
    if counts.media > 0 {
        println!("copy the source's media folder (or bucket) to {}", data_dir.join("media").display());
    }
    println!("API keys are not in an export: create them with `palaver keys create`");
    Ok(())
}

/// The embedded database of `data_dir`, which must exist.
fn embedded_database(data_dir: &Path) -> Result<PathBuf> {
    let database = data_dir.join(palaver_server::DATABASE_FILE);
    if !database.is_file() {
        anyhow::bail!(
            "there is no embedded database at {} (for a PostgreSQL deployment use pg_dump, or `palaver export \
             --database postgres://…`)",
            database.display()
        );
    }
    Ok(database)
}

async fn open(data_dir: &Path, database: Option<&str>) -> Result<palaver_server::AppState> {
    let credentials = palaver_server::Credentials {
        account_sid: palaver_api::sid::AccountSid::generate(),
        auth_token: String::new(),
    };
    palaver_server::open(data_dir, database, credentials, Default::default()).await.with_context(|| match database {
        Some(_) => "opening the PostgreSQL database".to_string(),
        None => format!("opening the embedded database in {}", data_dir.display()),
    })
}

/// A folder inside the data directory for the export's snapshot, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join(format!(".export-snapshot-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
