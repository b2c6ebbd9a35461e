//! The file systems and the disk: `mke2fs -d` for `/boot` and root (hard links kept: an ostree
//! deployment is hard links into the repository), a FAT EFI system partition written with
//! mtools, `sfdisk` for the table, and each partition copied in at its offset, sparsely.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use super::layout::{BOOT_MIB, ESP_MIB, Layout};
use super::{BootError, run_tool};

const MIB: u64 = 1024 * 1024;

/// The size of a tree, each inode counted once, in MiB (rounded up).
pub fn content_mib(root: &Path) -> Result<u64, BootError> {
    let mut seen = HashSet::new();
    let mut bytes = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| BootError::io(&dir, e))? {
            let entry = entry.map_err(|e| BootError::io(&dir, e))?;
            let meta = entry
                .metadata()
                .map_err(|e| BootError::io(entry.path(), e))?;
            if !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            bytes += meta.len().div_ceil(4096) * 4096;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(bytes.div_ceil(MIB))
}

/// Writes the disk at `disk` from the `/boot` tree, the sysroot (with an empty `boot/`) and the
/// EFI binary in `work`.
pub fn assemble(
    layout: &Layout,
    work: &Path,
    boot_dir: &Path,
    sysroot: &Path,
    disk: &Path,
) -> Result<(), BootError> {
    let boot_img = work.join("boot.img");
    let root_img = work.join("root.img");
    let esp_img = work.join("esp.img");
    ext4(boot_dir, "boot", &layout.boot_uuid, BOOT_MIB, &boot_img)?;
    ext4(
        sysroot,
        "root",
        &layout.root_uuid,
        layout.root_mib,
        &root_img,
    )?;
    esp(&work.join("BOOTX64.EFI"), &esp_img)?;

    let file = File::create(disk).map_err(|e| BootError::io(disk, e))?;
    file.set_len(layout.total_mib() * MIB)
        .map_err(|e| BootError::io(disk, e))?;
    drop(file);
    let mut sfdisk = Command::new("sfdisk");
    sfdisk
        .arg("--quiet")
        .arg(disk)
        .stdin(std::process::Stdio::piped());
    sfdisk_with_input(&mut sfdisk, &layout.sfdisk_script())?;
    for (img, offset) in [
        (&esp_img, layout.esp_offset_mib()),
        (&boot_img, layout.boot_offset_mib()),
        (&root_img, layout.root_offset_mib()),
    ] {
        copy_sparse(img, disk, offset * MIB)?;
        std::fs::remove_file(img).map_err(|e| BootError::io(img, e))?;
    }
    Ok(())
}

fn ext4(tree: &Path, label: &str, uuid: &str, mib: u64, out: &Path) -> Result<(), BootError> {
    run_tool(
        Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-L", label, "-U", uuid, "-d"])
            .arg(tree)
            .arg(out)
            .arg(format!("{mib}M")),
    )
    .map(|_| ())
}

fn esp(efi_binary: &Path, out: &Path) -> Result<(), BootError> {
    run_tool(
        Command::new("mkfs.vfat")
            .args(["-n", "EFI-SYSTEM", "-C"])
            .arg(out)
            .arg((ESP_MIB * 1024).to_string()),
    )?;
    run_tool(
        Command::new("mmd")
            .arg("-i")
            .arg(out)
            .args(["::/EFI", "::/EFI/BOOT"]),
    )?;
    run_tool(
        Command::new("mcopy")
            .arg("-i")
            .arg(out)
            .arg(efi_binary)
            .arg("::/EFI/BOOT/BOOTX64.EFI"),
    )
    .map(|_| ())
}

fn sfdisk_with_input(cmd: &mut Command, input: &str) -> Result<(), BootError> {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| BootError::Tool {
            tool: "sfdisk".into(),
            detail: format!("cannot start: {e}"),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| BootError::io("sfdisk stdin", e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| BootError::io("sfdisk", e))?;
    if !out.status.success() {
        return Err(BootError::Tool {
            tool: "sfdisk".into(),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

/// Copies `from` into `to` at `offset`, leaving runs of zeros as holes.
fn copy_sparse(from: &Path, to: &Path, offset: u64) -> Result<(), BootError> {
    const BLOCK: usize = 64 * 1024;
    let mut src = File::open(from).map_err(|e| BootError::io(from, e))?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .open(to)
        .map_err(|e| BootError::io(to, e))?;
    let mut buf = vec![0u8; BLOCK];
    let mut pos = offset;
    loop {
        let n = read_full(&mut src, &mut buf).map_err(|e| BootError::io(from, e))?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|b| *b != 0) {
            dst.seek(SeekFrom::Start(pos))
                .map_err(|e| BootError::io(to, e))?;
            dst.write_all(&buf[..n]).map_err(|e| BootError::io(to, e))?;
        }
        pos += n as u64;
    }
    Ok(())
}

fn read_full(src: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Bytes a (sparse) file occupies on disk.
pub fn allocated_bytes(path: &Path) -> Result<u64, BootError> {
    Ok(std::fs::metadata(path)
        .map_err(|e| BootError::io(path, e))?
        .blocks()
        * 512)
}

pub fn file_bytes(path: &Path) -> Result<u64, BootError> {
    Ok(std::fs::metadata(path)
        .map_err(|e| BootError::io(path, e))?
        .len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_copy_writes_data_at_the_offset_and_leaves_zeros_as_holes() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("part");
        let mut data = vec![0u8; 3 * 64 * 1024];
        data[70_000] = 7;
        std::fs::write(&from, &data).unwrap();
        let to = dir.path().join("disk");
        File::create(&to).unwrap().set_len(4 * MIB).unwrap();
        copy_sparse(&from, &to, MIB).unwrap();
        let disk = std::fs::read(&to).unwrap();
        assert_eq!(disk.len() as u64, 4 * MIB);
        assert_eq!(disk[MIB as usize + 70_000], 7);
        assert_eq!(disk.iter().filter(|b| **b != 0).count(), 1);
        assert!(
            allocated_bytes(&to).unwrap() <= 128 * 1024,
            "only one block written"
        );
    }

    #[test]
    fn content_counts_hard_links_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![1u8; 3 * 1024 * 1024]).unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        assert_eq!(content_mib(dir.path()).unwrap(), 3);
    }
}
