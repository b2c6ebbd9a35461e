//! Starting a disk in QEMU the way a machine starts: UEFI firmware (OVMF) from flash, the disk on
//! virtio, no kernel given on the command line. KVM where it works, software emulation otherwise.

use std::path::{Path, PathBuf};

/// OVMF, as Debian's `ovmf` package installs it.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// How the VM's CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM when usable, else software emulation.
    Auto,
    Kvm,
    /// QEMU's software emulation (TCG), multi-threaded.
    Tcg,
}

impl Accel {
    /// `Auto` decided: KVM when `/dev/kvm` opens read-write and the host's KVM is not PVM (a
    /// PVM host, `kvm_pvm` loaded, runs only kernels built for PVM: a stock kernel hangs).
    pub fn resolve(self) -> Accel {
        match self {
            Accel::Auto => {
                let kvm = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/kvm")
                    .is_ok();
                let pvm = Path::new("/sys/module/kvm_pvm").exists();
                if kvm && !pvm { Accel::Kvm } else { Accel::Tcg }
            }
            other => other,
        }
    }

    /// The VM's vCPUs. One under software emulation: with two, QEMU's multi-threaded emulation
    /// on a busy host starves one vCPU's timer until the kernel's RCU stalls for good (seen in CI:
    /// the boot check of an image that boots hung at 380 s of 900), and lets one vCPU run code
    /// the kernel is patching on the other (`Oops: int3`); the e2e machines boot with one.
    pub fn vcpus(self) -> u32 {
        match self {
            Accel::Kvm => 2,
            Accel::Tcg | Accel::Auto => 1,
        }
    }
}

/// One VM: the disk (opened copy-on-write: the VM's writes are thrown away), its firmware
/// variables, where the serial console and the report port go.
#[derive(Clone, Debug)]
pub struct Vm {
    pub disk: PathBuf,
    pub vars: PathBuf,
    pub console_log: PathBuf,
    pub report: PathBuf,
    pub accel: Accel,
    pub memory_mib: u32,
}

impl Vm {
    /// QEMU's arguments (`accel` already resolved).
    pub fn qemu_args(&self) -> Vec<String> {
        let format = if self.disk.extension().is_some_and(|e| e == "qcow2") {
            "qcow2"
        } else {
            "raw"
        };
        let accel = match self.accel {
            Accel::Kvm => "kvm",
            Accel::Tcg | Accel::Auto => "tcg,thread=multi",
        };
        let mut args: Vec<String> = vec![
            "-machine".into(),
            "q35".into(),
            "-accel".into(),
            accel.into(),
            "-smp".into(),
            self.accel.vcpus().to_string(),
            "-m".into(),
            self.memory_mib.to_string(),
            "-nographic".into(),
            "-no-reboot".into(),
            "-nic".into(),
            "none".into(),
            "-drive".into(),
            format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
            "-drive".into(),
            format!("if=pflash,format=raw,file={}", self.vars.display()),
            "-drive".into(),
            format!(
                "file={},format={format},if=virtio,snapshot=on",
                self.disk.display()
            ),
            "-serial".into(),
            format!("file:{}", self.console_log.display()),
            "-monitor".into(),
            "none".into(),
            "-device".into(),
            "virtio-serial".into(),
            "-chardev".into(),
            format!("file,id=report,path={}", self.report.display()),
            "-device".into(),
            format!("virtserialport,chardev=report,name={}", super::report::PORT),
        ];
        if self.accel == Accel::Kvm {
            args.extend(["-cpu".into(), "host".into()]);
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vm_boots_from_firmware_with_the_disk_copy_on_write() {
        let vm = Vm {
            disk: "/d/disk.qcow2".into(),
            vars: "/d/vars.fd".into(),
            console_log: "/d/console.log".into(),
            report: "/d/report".into(),
            accel: Accel::Tcg,
            memory_mib: 2048,
        };
        let args = vm.qemu_args().join(" ");
        assert!(
            !args.contains("-kernel"),
            "no harness plays the boot loader"
        );
        assert!(args.contains(&format!(
            "if=pflash,format=raw,readonly=on,file={OVMF_CODE}"
        )));
        assert!(args.contains("file=/d/disk.qcow2,format=qcow2,if=virtio,snapshot=on"));
        assert!(args.contains("-accel tcg,thread=multi -smp 1 "));
        assert!(args.contains("name=strata.boot-report"));
        let kvm = Vm {
            accel: Accel::Kvm,
            ..vm
        };
        assert!(kvm.qemu_args().join(" ").contains("-accel kvm -smp 2 "));
    }
}
