//! The disk's shape, computed from the image: partitions and their sizes, file system identities,
//! kernel arguments, GRUB's early config and menu header, the `/boot` line of fstab. Pure.

use sha2::{Digest, Sha256};

/// Room before the first partition (the GPT and 1 MiB alignment) and after the last (the
/// backup GPT).
const LEAD_MIB: u64 = 1;
const TAIL_MIB: u64 = 1;
/// The EFI system partition: GRUB's EFI binary only (FAT; Fedora CoreOS uses 127 MiB).
pub const ESP_MIB: u64 = 127;
/// `/boot`: two deployments' kernels and initramfs (Fedora CoreOS uses 384 MiB).
pub const BOOT_MIB: u64 = 384;
/// Root has room for a second deployment beside the first (an update keeps the old one for
/// rollback; objects shared by both are stored once): twice the content, plus this.
const ROOT_SLACK_MIB: u64 = 1024;

/// The partitions and identities of one disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub root_mib: u64,
    pub boot_uuid: String,
    pub root_uuid: String,
}

impl Layout {
    /// The layout for an image (`seed`: its digest, so one image always gives the same
    /// identities, as a cloud image does) whose sysroot, without `/boot`, holds
    /// `root_content_mib`; `root_mib` overrides the root partition's size.
    pub fn new(seed: &str, root_content_mib: u64, root_mib: Option<u64>) -> Self {
        Layout {
            root_mib: root_mib.unwrap_or(root_content_mib * 2 + ROOT_SLACK_MIB),
            boot_uuid: uuid_from(seed, "boot"),
            root_uuid: uuid_from(seed, "root"),
        }
    }

    pub fn esp_offset_mib(&self) -> u64 {
        LEAD_MIB
    }

    pub fn boot_offset_mib(&self) -> u64 {
        LEAD_MIB + ESP_MIB
    }

    pub fn root_offset_mib(&self) -> u64 {
        LEAD_MIB + ESP_MIB + BOOT_MIB
    }

    pub fn total_mib(&self) -> u64 {
        self.root_offset_mib() + self.root_mib + TAIL_MIB
    }

    /// The partition table, as `sfdisk` reads it.
    pub fn sfdisk_script(&self) -> String {
        format!(
            "label: gpt\n\
             start={LEAD_MIB}MiB, size={ESP_MIB}MiB, type=uefi, name=EFI-SYSTEM\n\
             size={BOOT_MIB}MiB, type=linux, name=boot\n\
             size={}MiB, type=linux, name=root\n",
            self.root_mib
        )
    }

    /// The kernel arguments ostree writes into the boot loader entry (it adds `ostree=`).
    /// The serial console comes last, so it is `/dev/console` (what the boot check reads).
    pub fn kernel_args(&self, extra: &[String]) -> Vec<String> {
        let mut args = vec![
            format!("root=UUID={}", self.root_uuid),
            "rw".to_string(),
            "console=tty0".to_string(),
            "console=ttyS0,115200n8".to_string(),
        ];
        args.extend(extra.iter().cloned());
        args
    }

    /// Built into GRUB's EFI binary: find `/boot` by its UUID and make it the prefix. GRUB's
    /// normal mode then reads the menu there with the module directory's command lists, so
    /// commands the menu uses load on demand (`load_env`, `save_env`: grub-mkconfig's menus load
    /// grubenv). A `configfile` from here would run the menu before those lists are read (seen:
    /// "can't find command `load_env'").
    pub fn grub_early_config(&self) -> String {
        format!(
            "search --no-floppy --fs-uuid --set=root {}\n\
             set prefix=($root)/grub\n",
            self.boot_uuid
        )
    }

    /// `/boot` in the deployment's fstab (the deployment's `/etc`, as Ignition would write it),
    /// so ostree on the machine finds its boot loader entries for the next update.
    pub fn fstab_line(&self) -> String {
        format!("UUID={} /boot ext4 defaults 1 2\n", self.boot_uuid)
    }
}

/// The top of `grub.cfg`, before the entries ostree generates: a short timeout, the menu on
/// the serial console and the screen.
pub const GRUB_MENU_HEADER: &str = "\
set timeout=1
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
";

/// The modules built into GRUB's EFI binary: enough to find `/boot` and read its menu; the rest
/// load from `/boot/grub/x86_64-efi`.
pub const GRUB_EFI_MODULES: &[&str] = &[
    "part_gpt",
    "fat",
    "ext2",
    "search",
    "search_fs_uuid",
    "normal",
    "configfile",
    "linux",
    "gzio",
    "echo",
    "test",
    "serial",
    "terminal",
    "efi_gop",
    "all_video",
];

/// A version-4-shaped UUID from a seed and a role.
fn uuid_from(seed: &str, role: &str) -> String {
    let digest = Sha256::digest(format!("{seed}\n{role}").as_bytes());
    let mut b: [u8; 16] = [0; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_follow_each_other_and_fit_the_disk() {
        let l = Layout::new("sha256:abc", 1300, None);
        assert_eq!(l.root_mib, 3624);
        assert_eq!(l.esp_offset_mib(), 1);
        assert_eq!(l.boot_offset_mib(), 128);
        assert_eq!(l.root_offset_mib(), 512);
        assert_eq!(l.total_mib(), 512 + 3624 + 1);
        assert_eq!(Layout::new("sha256:abc", 1300, Some(5000)).root_mib, 5000);
    }

    #[test]
    fn identities_are_uuids_stable_per_image_and_distinct_per_role() {
        let a = Layout::new("sha256:abc", 1, None);
        let b = Layout::new("sha256:abc", 2, None);
        let c = Layout::new("sha256:def", 1, None);
        assert_eq!(a.boot_uuid, b.boot_uuid);
        assert_ne!(a.boot_uuid, a.root_uuid);
        assert_ne!(a.boot_uuid, c.boot_uuid);
        let re = regex::Regex::new(
            "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
        )
        .unwrap();
        assert!(re.is_match(&a.boot_uuid), "{}", a.boot_uuid);
        assert!(re.is_match(&a.root_uuid), "{}", a.root_uuid);
    }

    #[test]
    fn the_boot_loader_finds_boot_and_root_by_uuid() {
        let l = Layout::new("sha256:abc", 1, None);
        assert!(
            l.grub_early_config()
                .contains(&format!("--set=root {}", l.boot_uuid))
        );
        assert_eq!(l.kernel_args(&[])[0], format!("root=UUID={}", l.root_uuid));
        assert_eq!(
            l.kernel_args(&["quiet".into()]).last().map(String::as_str),
            Some("quiet")
        );
        assert!(
            l.fstab_line()
                .starts_with(&format!("UUID={} /boot ext4", l.boot_uuid))
        );
        insta::assert_snapshot!(l.sfdisk_script(), @r"
        label: gpt
        start=1MiB, size=127MiB, type=uefi, name=EFI-SYSTEM
        size=384MiB, type=linux, name=boot
        size=1026MiB, type=linux, name=root
        ");
    }
}
