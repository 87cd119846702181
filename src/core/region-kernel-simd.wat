;; The SIMD path of the region kernel's dense patches (four entries per step), for runtimes with
;; WebAssembly SIMD. Assembled by scripts/build-hash-kernel.ts into
;; src/core/region-kernel-simd-wasm.ts; the glue is region-kernel.ts, which instantiates it on the
;; region kernel's own memory (imported as "r" "m") and falls back to the plain "d" where SIMD
;; is missing.
;;
;; D(base, lim, codec, scale): what "d" of region-kernel.wat does (same state at 0x40, same
;; region at 0x1000, the same bits written), four entries at a time, for as long as four entries
;; are left before lim. It stops before any group of four holding a value that is NaN or infinite
;; or a weight the patch would make NaN or infinite, with nothing of that group written: "d",
;; called next, applies the entries left one by one and reports the fault at the exact entry.
;; It logs (position, old bits) as "d" does, at slots [0, n) of the log, n stored at 0x64; it
;; never sets the error at 0x68.
;;
;; Memory used beyond region-kernel.wat's layout: [0x100, 0x200), sixteen byte shuffles
;; (i8x16.swizzle) that move the lanes a 4-bit mask selects to the front, in order.
(module
  (import "r" "m" (memory 4))
  (data (i32.const 0x100) "\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00") ;; 0000
  (data (i32.const 0x110) "\00\01\02\03\00\00\00\00\00\00\00\00\00\00\00\00") ;; 0001
  (data (i32.const 0x120) "\04\05\06\07\00\00\00\00\00\00\00\00\00\00\00\00") ;; 0010
  (data (i32.const 0x130) "\00\01\02\03\04\05\06\07\00\00\00\00\00\00\00\00") ;; 0011
  (data (i32.const 0x140) "\08\09\0a\0b\00\00\00\00\00\00\00\00\00\00\00\00") ;; 0100
  (data (i32.const 0x150) "\00\01\02\03\08\09\0a\0b\00\00\00\00\00\00\00\00") ;; 0101
  (data (i32.const 0x160) "\04\05\06\07\08\09\0a\0b\00\00\00\00\00\00\00\00") ;; 0110
  (data (i32.const 0x170) "\00\01\02\03\04\05\06\07\08\09\0a\0b\00\00\00\00") ;; 0111
  (data (i32.const 0x180) "\0c\0d\0e\0f\00\00\00\00\00\00\00\00\00\00\00\00") ;; 1000
  (data (i32.const 0x190) "\00\01\02\03\0c\0d\0e\0f\00\00\00\00\00\00\00\00") ;; 1001
  (data (i32.const 0x1a0) "\04\05\06\07\0c\0d\0e\0f\00\00\00\00\00\00\00\00") ;; 1010
  (data (i32.const 0x1b0) "\00\01\02\03\04\05\06\07\0c\0d\0e\0f\00\00\00\00") ;; 1011
  (data (i32.const 0x1c0) "\08\09\0a\0b\0c\0d\0e\0f\00\00\00\00\00\00\00\00") ;; 1100
  (data (i32.const 0x1d0) "\00\01\02\03\08\09\0a\0b\0c\0d\0e\0f\00\00\00\00") ;; 1101
  (data (i32.const 0x1e0) "\04\05\06\07\08\09\0a\0b\0c\0d\0e\0f\00\00\00\00") ;; 1110
  (data (i32.const 0x1f0) "\00\01\02\03\04\05\06\07\08\09\0a\0b\0c\0d\0e\0f") ;; 1111

  (func (export "D") (param $base i32) (param $lim i32) (param $codec i32) (param $scale f32)
    (local $vp i32) (local $left i32) (local $pos i32) (local $end i32) (local $nlog i32)
    (local $vn i32) (local $addr i32) (local $mask i32)
    (local $h v128) (local $b v128) (local $d v128) (local $o v128) (local $nw v128) (local $bad v128) (local $sel v128)
    (local.set $vp (i32.load (i32.const 0x48)))
    (local.set $left (i32.load (i32.const 0x4c)))
    (local.set $pos (i32.wrap_i64 (i64.add (i64.load (i32.const 0x50)) (i64.const 1))))
    (local.set $end (select (local.get $lim) (i32.add (local.get $pos) (local.get $left)) (i32.lt_u (local.get $lim) (i32.add (local.get $pos) (local.get $left)))))
    (block $out
      (br_if $out (i32.gt_u (i32.add (local.get $pos) (i32.const 4)) (local.get $end)))
      (loop $group
        ;; four values, and which of them are NaN or infinite
        (if (i32.eqz (local.get $codec))
          (then
            ;; half to single, exactly, as "d" does: a normal half's exponent and mantissa move
            ;; to a single's place (exponent + 112); a subnormal one (or zero) is
            ;; mantissa * 2^-24; then the sign
            (local.set $h (v128.load16x4_u (local.get $vp)))
            (local.set $vn (i32.add (local.get $vp) (i32.const 8)))
            (local.set $b (v128.and (local.get $h) (v128.const i32x4 0x7c00 0x7c00 0x7c00 0x7c00)))
            (local.set $bad (i32x4.eq (local.get $b) (v128.const i32x4 0x7c00 0x7c00 0x7c00 0x7c00)))
            (local.set $d (v128.or
              (v128.bitselect
                (i32x4.add (i32x4.shl (v128.and (local.get $h) (v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff)) (i32.const 13)) (v128.const i32x4 0x38000000 0x38000000 0x38000000 0x38000000))
                (f32x4.mul (f32x4.convert_i32x4_u (v128.and (local.get $h) (v128.const i32x4 0x3ff 0x3ff 0x3ff 0x3ff))) (v128.const f32x4 0x1p-24 0x1p-24 0x1p-24 0x1p-24))
                (i32x4.ne (local.get $b) (v128.const i32x4 0 0 0 0)))
              (i32x4.shl (v128.and (local.get $h) (v128.const i32x4 0x8000 0x8000 0x8000 0x8000)) (i32.const 16)))))
          (else
            (if (i32.eq (local.get $codec) (i32.const 1))
              (then
                (local.set $d (v128.load (local.get $vp)))
                (local.set $vn (i32.add (local.get $vp) (i32.const 16))))
              (else
                (local.set $d (f32x4.mul
                  (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (i16x8.extend_low_i8x16_s (v128.load32_zero (local.get $vp)))))
                  (f32x4.splat (local.get $scale))))
                (local.set $vn (i32.add (local.get $vp) (i32.const 4)))))
            (local.set $bad (f32x4.ne (f32x4.sub (local.get $d) (local.get $d)) (v128.const f32x4 0 0 0 0)))))
        (local.set $addr (i32.add (i32.const 0x1000) (i32.shl (i32.sub (local.get $pos) (local.get $base)) (i32.const 2))))
        (local.set $o (v128.load (local.get $addr)))
        (local.set $nw (f32x4.add (local.get $o) (local.get $d)))
        ;; a bad value, or a weight made NaN or infinite: nothing of this group is written
        (br_if $out (v128.any_true (v128.or (local.get $bad)
          (f32x4.ne (f32x4.sub (local.get $nw) (local.get $nw)) (v128.const f32x4 0 0 0 0)))))
        (v128.store (local.get $addr) (local.get $nw))
        ;; logged as in "d", without a branch: where f32(new - d) is not the old bits, or the old
        ;; value is NaN; the lanes to log are moved to the front and written at the next slots
        ;; (the log has room for 16 bytes at any slot a call reaches), counted by the mask's bits
        (local.set $mask (i32x4.bitmask (v128.or
          (i32x4.ne (f32x4.sub (local.get $nw) (local.get $d)) (local.get $o))
          (f32x4.ne (local.get $o) (local.get $o)))))
        (local.set $sel (v128.load offset=0x100 (i32.shl (local.get $mask) (i32.const 4))))
        (v128.store offset=0x9000 (i32.shl (local.get $nlog) (i32.const 2))
          (i8x16.swizzle (i32x4.add (i32x4.splat (local.get $pos)) (v128.const i32x4 0 1 2 3)) (local.get $sel)))
        (v128.store offset=0x11000 (i32.shl (local.get $nlog) (i32.const 2))
          (i8x16.swizzle (local.get $o) (local.get $sel)))
        (local.set $nlog (i32.add (local.get $nlog) (i32.popcnt (local.get $mask))))
        (local.set $vp (local.get $vn))
        (local.set $pos (i32.add (local.get $pos) (i32.const 4)))
        (local.set $left (i32.sub (local.get $left) (i32.const 4)))
        (br_if $group (i32.le_u (i32.add (local.get $pos) (i32.const 4)) (local.get $end)))))
    (i32.store (i32.const 0x48) (local.get $vp))
    (i32.store (i32.const 0x4c) (local.get $left))
    (i64.store (i32.const 0x50) (i64.sub (i64.extend_i32_u (local.get $pos)) (i64.const 1)))
    (i32.store (i32.const 0x64) (local.get $nlog)))
)
