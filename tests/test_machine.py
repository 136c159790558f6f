"""The machine fingerprint: read by archspec, ISA features kept on x86 and ARM alike."""
import platform

from comparator.run.machine import cpu_description, environment_fingerprint, isa_features

# The `Features` line of /proc/cpuinfo on an AWS Graviton3 (Neoverse V1) and the `flags` line of an Intel Xeon
# (Sapphire Rapids), as the kernel prints them.
GRAVITON3 = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop "
             "sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs paca pacg dcpodp svei8mm svebf16 "
             "i8mm bf16 dgh rng").split()
SAPPHIRE_RAPIDS = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 "
                   "ss ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid "
                   "tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx "
                   "f16c rdrand hypervisor lahf_lm abm 3dnowprefetch bmi1 avx2 smep bmi2 erms invpcid avx512f "
                   "avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt "
                   "xsavec xgetbv1 xsaves avx_vnni avx512_bf16 wbnoinvd ida arat avx512vbmi umip pku ospke waitpkg "
                   "avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg tme avx512_vpopcntdq rdpid "
                   "cldemote movdiri movdir64b md_clear serialize tsxldtrk amx_bf16 avx512_fp16 amx_tile amx_int8 "
                   "flush_l1d arch_capabilities").split()


def test_arm_features_are_kept():
    kept = isa_features("aarch64", GRAVITON3)
    assert {"asimd", "asimdhp", "asimddp", "asimdfhm", "fphp", "sve", "svei8mm", "svebf16", "i8mm", "bf16",
            "fcma"} <= set(kept)
    assert not {"aes", "sha2", "crc32", "atomics", "evtstrm"} & set(kept)
    assert isa_features("arm64", ["neon", "fp16", "dotprod"]) == ["dotprod", "fp16", "neon"]  # macOS names


def test_x86_features_are_kept():
    kept = isa_features("x86_64", SAPPHIRE_RAPIDS)
    assert {"sse2", "ssse3", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_fp16", "avx512_bf16",
            "avx_vnni", "amx_bf16", "amx_int8"} <= set(kept)
    assert not {"fpu", "aes", "popcnt", "hypervisor", "sha_ni"} & set(kept)
    assert kept == sorted(kept)


def test_this_machine():
    env = environment_fingerprint()
    assert {"cpu", "arch", "vendor", "microarchitecture", "cpu_flags", "cores", "os", "python", "numpy"} <= set(env)
    assert env["arch"] == platform.machine() and env["cpu"]
    import archspec.cpu

    assert env["microarchitecture"] == archspec.cpu.host().name
    if platform.machine() in ("x86_64", "AMD64"):
        assert "sse2" in env["cpu_flags"]
    elif platform.machine() in ("aarch64", "arm64"):
        assert env["cpu_flags"]
    assert cpu_description()["cpu_flags"] == env["cpu_flags"]
    processor = platform.processor()  # `uname -p`: blank, or the machine's name, on the Linux distributions
    if not processor or processor == platform.machine():
        assert env["os"] == platform.platform()
    else:  # a distribution whose `uname -p` says more: the string as platform.platform() gives it, less that field
        assert env["os"] == platform.platform().replace(f"-{processor.replace(' ', '_')}", "", 1)
