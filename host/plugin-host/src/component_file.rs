//! Reading a plugin's component file: only a regular file, at most a size cap, read with a
//! bound. A FIFO, a device (`/dev/zero`), a socket or a directory is refused at once, without
//! blocking or reading it.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use super::error::LoadError;

/// The default cap on a component file's size (256 MiB; the largest example plugin, a Python
/// one with its interpreter, is about 19 MiB).
pub const DEFAULT_MAX_COMPONENT_SIZE: u64 = 256 * 1024 * 1024;

/// Reads the component file `path`: a regular file of at most `max` bytes.
pub(crate) fn read(path: &Path, max: u64) -> Result<Vec<u8>, LoadError> {
    let io = |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Non-blocking open: opening a FIFO for reading waits for a writer otherwise.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(LoadError::NotAFile {
            path: path.to_path_buf(),
            kind,
        });
    }
    let too_large = |size| LoadError::TooLarge {
        path: path.to_path_buf(),
        size,
        max,
    };
    if meta.len() > max {
        return Err(too_large(meta.len()));
    }
    // The file may grow between the check and the read: never read more than `max + 1`.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_is_read_whole() {
        let dir = std::env::temp_dir().join(format!("callop-cf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("a.wasm");
        std::fs::write(&f, b"\0asm0123").unwrap();
        assert_eq!(read(&f, 8).unwrap(), b"\0asm0123");
        let e = read(&f, 7).unwrap_err();
        assert!(
            matches!(
                e,
                LoadError::TooLarge {
                    size: 8,
                    max: 7,
                    ..
                }
            ),
            "{e}"
        );
        let e = read(&dir, 1 << 20).unwrap_err();
        assert!(
            matches!(
                e,
                LoadError::NotAFile {
                    kind: "a directory",
                    ..
                }
            ),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_device_is_refused_without_reading() {
        let e = read(Path::new("/dev/zero"), DEFAULT_MAX_COMPONENT_SIZE).unwrap_err();
        assert!(
            matches!(
                e,
                LoadError::NotAFile {
                    kind: "a device",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("/dev/zero"), "{e}");
    }

    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = std::env::temp_dir().join(format!("callop-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("plugin.wasm");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let start = std::time::Instant::now();
        let e = read(&fifo, DEFAULT_MAX_COMPONENT_SIZE).unwrap_err();
        assert!(
            matches!(e, LoadError::NotAFile { kind: "a FIFO", .. }),
            "{e}"
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
