//! Copies an HTTP body straight into a dataset file: each chunk the client received is written
//! as it is and released, so a log of any size costs one chunk of memory. The file appears
//! under its final name only when the body ended cleanly (see [`crate::atomic_write`]).

use std::io;
use std::path::{Path, PathBuf};

use futures_util::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::io::AsyncWriteExt;

use crate::atomic_write::AtomicFile;

/// Why a copy failed: reading the body (network, server) or writing the file (disk).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("reading the response: {0}")]
    Read(#[source] io::Error),
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Streams `body` to `path` (created with its parent folders) and returns the bytes written;
/// an empty body with `keep_empty` false leaves no file and returns `None`.
///
/// File creation and the final sync + rename run on the blocking pool; chunk writes go
/// through `tokio::fs::File`, which hands each one to the blocking pool too, so no runtime
/// worker waits on the disk.
///
/// # Errors
/// [`CopyError::Read`] when the body breaks off, [`CopyError::Write`] when the disk fails; the
/// temporary file is removed in both cases.
pub async fn copy_to_file<R>(
    body: R,
    path: &Path,
    keep_empty: bool,
) -> Result<Option<u64>, CopyError>
where
    R: AsyncBufRead,
{
    let write_err = |source| CopyError::Write {
        path: path.to_path_buf(),
        source,
    };
    let target = path.to_path_buf();
    let mut file = blocking(move || AtomicFile::create(&target))
        .await
        .map_err(write_err)?;
    let handle = file.file().try_clone().map_err(write_err)?;
    let mut out = tokio::fs::File::from_std(handle);
    let mut body = std::pin::pin!(body);
    let mut bytes = 0u64;
    loop {
        let chunk = body.fill_buf().await.map_err(CopyError::Read)?;
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len();
        out.write_all(chunk).await.map_err(write_err)?;
        body.as_mut().consume(n);
        bytes += n as u64;
    }
    // Waits for the last chunk handed to the blocking pool before the rename.
    out.flush().await.map_err(write_err)?;
    drop(out);
    if bytes == 0 && !keep_empty {
        // Dropping the uncommitted file removes it.
        blocking(move || {
            drop(file);
            Ok(())
        })
        .await
        .map_err(write_err)?;
        return Ok(None);
    }
    blocking(move || file.commit().map(drop))
        .await
        .map_err(write_err)?;
    Ok(Some(bytes))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream::{self, TryStreamExt};

    #[tokio::test]
    async fn chunks_land_in_the_file_and_a_broken_body_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pod/pod_20260301T100000Z.log");
        let chunks: Vec<io::Result<bytes::Bytes>> = vec![
            Ok(bytes::Bytes::from_static(b"line 1\n")),
            Ok(bytes::Bytes::from_static(b"line 2\nli")),
            Ok(bytes::Bytes::from_static(b"ne 3\n")),
        ];
        let n = copy_to_file(stream::iter(chunks).into_async_read(), &path, false)
            .await
            .unwrap();
        assert_eq!(n, Some(21));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "line 1\nline 2\nline 3\n"
        );

        let broken = dir.path().join("pod/broken.log");
        let chunks: Vec<io::Result<bytes::Bytes>> = vec![
            Ok(bytes::Bytes::from_static(b"line 1\n")),
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset")),
        ];
        let err = copy_to_file(stream::iter(chunks).into_async_read(), &broken, true)
            .await
            .unwrap_err();
        assert!(matches!(err, CopyError::Read(_)), "{err}");
        assert!(!broken.exists());
        // Only the finished file is left in the folder (no temporary file).
        assert_eq!(
            std::fs::read_dir(dir.path().join("pod")).unwrap().count(),
            1
        );

        // An empty body: a file only when asked for.
        let empty = || stream::iter(Vec::<io::Result<bytes::Bytes>>::new()).into_async_read();
        let kept = dir.path().join("pod/kept.log");
        assert_eq!(copy_to_file(empty(), &kept, true).await.unwrap(), Some(0));
        assert_eq!(std::fs::read(&kept).unwrap(), b"");
        let dropped = dir.path().join("pod/dropped.log");
        assert_eq!(copy_to_file(empty(), &dropped, false).await.unwrap(), None);
        assert!(!dropped.exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join("pod")).unwrap().count(),
            2
        );
    }
}
