;; The region kernels of the device applier, in plain WebAssembly (no SIMD, no imports).
;; Assembled by scripts/build-hash-kernel.ts into src/core/region-kernel-wasm.ts; the glue is
;; region-kernel.ts. Two jobs on data in this module's memory:
;;
;; 1. XXH64 (the xxHash specification; docs/FORMAT-hashing.md): "i" sets up the four
;;    accumulators, "x" runs them over whole 32-byte stripes, "f" finishes a digest. The glue
;;    keeps each stream's accumulators, its bytes short of a stripe and its length, so a
;;    stream can run over data that is already here (a region of a tensor) without a copy.
;; 2. "a" patches a region of a tensor held here with a sparse patch (gap-coded positions), "d"
;;    with a dense one, decoding the positions and the values on the way (f16, f32, i8 codecs): per
;;    entry w = f32(w + d), as patch-math.ts does, and logs the position and the old bits
;;    wherever f32(new - d) would not give the old bits back (or the old value is NaN), so
;;    subtracting again and putting the logged bits back restores the region bit for bit.
;;
;; Memory (byte offsets, 256 KiB, never grown): [0x40, 0x80) the patch state of "a"; [0x80, 0xa0)
;; the accumulators of the stream being run; [0xc0, 0xe0) a stream's last bytes when it ends;
;; [0xfe0, 0x1000) a stream's bytes short of a stripe, put just before the region; [0x1000,
;; 0x9000) the region (8192 weights); [0x9000, 0x11000) logged positions; [0x11000, 0x19000)
;; logged old bits; [0x19000, 0x2d000) a window on the patch's gap bytes; [0x2d000, 0x3d000) a
;; window on its value bytes (the glue slides both windows along the patch).
(module
  (memory (export "m") 4)

  ;; i(st, seed): the accumulators at st for a stream of seed
  (func (export "i") (param $st i32) (param $seed i64)
    (i64.store (local.get $st) (i64.add (local.get $seed) (i64.const 0x60ea27eeadc0b5d6))) ;; P1 + P2
    (i64.store offset=8 (local.get $st) (i64.add (local.get $seed) (i64.const 0xc2b2ae3d27d4eb4f)))
    (i64.store offset=16 (local.get $st) (local.get $seed))
    (i64.store offset=24 (local.get $st) (i64.sub (local.get $seed) (i64.const 0x9e3779b185ebca87))))

  (func $round (param $acc i64) (param $in i64) (result i64)
    (i64.mul
      (i64.rotl (i64.add (local.get $acc) (i64.mul (local.get $in) (i64.const 0xc2b2ae3d27d4eb4f))) (i64.const 31))
      (i64.const 0x9e3779b185ebca87)))

  ;; x(p, end, st): the stripes [p, end) (a whole number of them) into the accumulators at st
  ;; (the round is written out four times: V8 does not inline calls between wasm functions)
  (func (export "x") (param $p i32) (param $end i32) (param $st i32)
    (local $a i64) (local $b i64) (local $c i64) (local $d i64)
    (if (i32.ge_u (local.get $p) (local.get $end)) (then (return)))
    (local.set $a (i64.load (local.get $st)))
    (local.set $b (i64.load offset=8 (local.get $st)))
    (local.set $c (i64.load offset=16 (local.get $st)))
    (local.set $d (i64.load offset=24 (local.get $st)))
    (loop $stripe
      (local.set $a (i64.mul (i64.rotl (i64.add (local.get $a) (i64.mul (i64.load (local.get $p)) (i64.const 0xc2b2ae3d27d4eb4f))) (i64.const 31)) (i64.const 0x9e3779b185ebca87)))
      (local.set $b (i64.mul (i64.rotl (i64.add (local.get $b) (i64.mul (i64.load offset=8 (local.get $p)) (i64.const 0xc2b2ae3d27d4eb4f))) (i64.const 31)) (i64.const 0x9e3779b185ebca87)))
      (local.set $c (i64.mul (i64.rotl (i64.add (local.get $c) (i64.mul (i64.load offset=16 (local.get $p)) (i64.const 0xc2b2ae3d27d4eb4f))) (i64.const 31)) (i64.const 0x9e3779b185ebca87)))
      (local.set $d (i64.mul (i64.rotl (i64.add (local.get $d) (i64.mul (i64.load offset=24 (local.get $p)) (i64.const 0xc2b2ae3d27d4eb4f))) (i64.const 31)) (i64.const 0x9e3779b185ebca87)))
      (br_if $stripe (i32.lt_u (local.tee $p (i32.add (local.get $p) (i32.const 32))) (local.get $end))))
    (i64.store (local.get $st) (local.get $a))
    (i64.store offset=8 (local.get $st) (local.get $b))
    (i64.store offset=16 (local.get $st) (local.get $c))
    (i64.store offset=24 (local.get $st) (local.get $d)))

  (func $merge (param $h i64) (param $v i64) (result i64)
    (i64.add
      (i64.mul (i64.xor (local.get $h) (call $round (i64.const 0) (local.get $v))) (i64.const 0x9e3779b185ebca87))
      (i64.const 0x85ebca77c2b2ae63)))

  ;; f(st, p, n, total, seed): the digest of a stream of `total` bytes whose last n (< 32) are
  ;; at p and whose whole stripes went into the accumulators at st
  (func (export "f") (param $st i32) (param $p i32) (param $n i32) (param $total i64) (param $seed i64) (result i64)
    (local $h i64) (local $end i32)
    (if (i64.ge_u (local.get $total) (i64.const 32))
      (then
        (local.set $h
          (i64.add
            (i64.add (i64.rotl (i64.load (local.get $st)) (i64.const 1)) (i64.rotl (i64.load offset=8 (local.get $st)) (i64.const 7)))
            (i64.add (i64.rotl (i64.load offset=16 (local.get $st)) (i64.const 12)) (i64.rotl (i64.load offset=24 (local.get $st)) (i64.const 18)))))
        (local.set $h (call $merge (local.get $h) (i64.load (local.get $st))))
        (local.set $h (call $merge (local.get $h) (i64.load offset=8 (local.get $st))))
        (local.set $h (call $merge (local.get $h) (i64.load offset=16 (local.get $st))))
        (local.set $h (call $merge (local.get $h) (i64.load offset=24 (local.get $st)))))
      (else (local.set $h (i64.add (local.get $seed) (i64.const 0x27d4eb2f165667c5)))))
    (local.set $h (i64.add (local.get $h) (local.get $total)))
    (local.set $end (i32.add (local.get $p) (local.get $n)))
    (block $done8
      (loop $eight
        (br_if $done8 (i32.gt_u (i32.add (local.get $p) (i32.const 8)) (local.get $end)))
        (local.set $h
          (i64.add
            (i64.mul
              (i64.rotl (i64.xor (local.get $h) (call $round (i64.const 0) (i64.load (local.get $p)))) (i64.const 27))
              (i64.const 0x9e3779b185ebca87))
            (i64.const 0x85ebca77c2b2ae63)))
        (local.set $p (i32.add (local.get $p) (i32.const 8)))
        (br $eight)))
    (if (i32.le_u (i32.add (local.get $p) (i32.const 4)) (local.get $end))
      (then
        (local.set $h
          (i64.add
            (i64.mul
              (i64.rotl
                (i64.xor (local.get $h) (i64.mul (i64.load32_u (local.get $p)) (i64.const 0x9e3779b185ebca87)))
                (i64.const 23))
              (i64.const 0xc2b2ae3d27d4eb4f))
            (i64.const 0x165667b19e3779f9)))
        (local.set $p (i32.add (local.get $p) (i32.const 4)))))
    (block $done1
      (loop $one
        (br_if $done1 (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $h
          (i64.mul
            (i64.rotl (i64.xor (local.get $h) (i64.mul (i64.load8_u (local.get $p)) (i64.const 0x27d4eb2f165667c5))) (i64.const 11))
            (i64.const 0x9e3779b185ebca87)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $one)))
    (local.set $h (i64.mul (i64.xor (local.get $h) (i64.shr_u (local.get $h) (i64.const 33))) (i64.const 0xc2b2ae3d27d4eb4f)))
    (local.set $h (i64.mul (i64.xor (local.get $h) (i64.shr_u (local.get $h) (i64.const 29))) (i64.const 0x165667b19e3779f9)))
    (i64.xor (local.get $h) (i64.shr_u (local.get $h) (i64.const 32))))

  ;; a(base, lim, codec, scale): apply the sparse patch entries whose positions are in
  ;; [base, lim) to the region (which holds the tensor's values from position base on).
  ;; State at 0x40 (i32 unless marked):
  ;;   +0 gp    the next gap byte          +4 gend  the end of the gap bytes
  ;;   +8 vp    the next value byte        +12 left entries not applied yet
  ;;   +16 prev (i64) the last position applied, -1 before the first
  ;;   +24 next (i64) the next entry's position once decoded, else -1
  ;;   +32 size the tensor's size          +36 nlog exceptions logged by this call
  ;;   +40 err  0, or 1 (a gap that is not a varint or leads past the tensor), 2 (a value
  ;;            that is NaN or infinite), 3 (a weight the patch made NaN or infinite)
  ;; codec: 0 f16, 1 f32, 2 i8 (times scale).
  (func (export "a") (param $base i32) (param $lim i32) (param $codec i32) (param $scale f32)
    (local $gp i32) (local $gend i32) (local $vp i32) (local $left i32) (local $prev i64) (local $next i64)
    (local $size i64) (local $limit i64) (local $nlog i32) (local $err i32)
    (local $b i32) (local $g i64) (local $sh i64) (local $h i32) (local $d f32) (local $o f32) (local $nw f32)
    (local $addr i32)
    (local.set $gp (i32.load (i32.const 0x40)))
    (local.set $gend (i32.load (i32.const 0x44)))
    (local.set $vp (i32.load (i32.const 0x48)))
    (local.set $left (i32.load (i32.const 0x4c)))
    (local.set $prev (i64.load (i32.const 0x50)))
    (local.set $next (i64.load (i32.const 0x58)))
    (local.set $size (i64.load32_u (i32.const 0x60)))
    (local.set $limit (i64.extend_i32_u (local.get $lim)))
    (block $out
      (br_if $out (i32.eqz (local.get $left)))
      (loop $entry
        (if (i64.lt_s (local.get $next) (i64.const 0))
          (then
            ;; the entry's position: the last one + 1 + its gap (a varint of at most 5 bytes,
            ;; at most 2^32 - 1)
            (if (i32.ge_u (local.get $gp) (local.get $gend)) (then (local.set $err (i32.const 1)) (br $out)))
            (local.set $b (i32.load8_u (local.get $gp)))
            (local.set $gp (i32.add (local.get $gp) (i32.const 1)))
            (local.set $g (i64.extend_i32_u (i32.and (local.get $b) (i32.const 0x7f))))
            (if (i32.ge_u (local.get $b) (i32.const 0x80))
              (then
                (local.set $sh (i64.const 7))
                (loop $byte
                  (if (i32.ge_u (local.get $gp) (local.get $gend)) (then (local.set $err (i32.const 1)) (br $out)))
                  (local.set $b (i32.load8_u (local.get $gp)))
                  (local.set $gp (i32.add (local.get $gp) (i32.const 1)))
                  (local.set $g (i64.or (local.get $g) (i64.shl (i64.extend_i32_u (i32.and (local.get $b) (i32.const 0x7f))) (local.get $sh))))
                  (local.set $sh (i64.add (local.get $sh) (i64.const 7)))
                  (br_if $byte (i32.and (i32.ge_u (local.get $b) (i32.const 0x80)) (i64.lt_u (local.get $sh) (i64.const 35)))))
                (if (i32.or (i32.ge_u (local.get $b) (i32.const 0x80)) (i64.gt_u (local.get $g) (i64.const 0xffffffff)))
                  (then (local.set $err (i32.const 1)) (br $out)))))
            (local.set $next (i64.add (local.get $prev) (i64.add (local.get $g) (i64.const 1))))
            (if (i64.ge_u (local.get $next) (local.get $size)) (then (local.set $err (i32.const 1)) (br $out)))))
        (br_if $out (i64.ge_u (local.get $next) (local.get $limit)))
        ;; the value
        (if (i32.eqz (local.get $codec))
          (then
            ;; half to single, exactly: a normal half's exponent and mantissa move to a single's
            ;; place (exponent + 112); a subnormal one (or zero) is mantissa * 2^-24; then the sign
            (local.set $h (i32.load16_u (local.get $vp)))
            (local.set $vp (i32.add (local.get $vp) (i32.const 2)))
            (local.set $b (i32.and (local.get $h) (i32.const 0x7c00)))
            (if (i32.eq (local.get $b) (i32.const 0x7c00)) (then (local.set $err (i32.const 2)) (br $out)))
            (if (local.get $b)
              (then (local.set $b (i32.add (i32.shl (i32.and (local.get $h) (i32.const 0x7fff)) (i32.const 13)) (i32.const 0x38000000))))
              (else (local.set $b (i32.reinterpret_f32 (f32.mul (f32.convert_i32_u (i32.and (local.get $h) (i32.const 0x3ff))) (f32.const 0x1p-24))))))
            (local.set $d (f32.reinterpret_i32 (i32.or (local.get $b) (i32.shl (i32.and (local.get $h) (i32.const 0x8000)) (i32.const 16))))))
          (else
            (if (i32.eq (local.get $codec) (i32.const 1))
              (then
                (local.set $d (f32.load (local.get $vp)))
                (local.set $vp (i32.add (local.get $vp) (i32.const 4))))
              (else
                (local.set $d (f32.mul (f32.convert_i32_s (i32.load8_s (local.get $vp))) (local.get $scale)))
                (local.set $vp (i32.add (local.get $vp) (i32.const 1)))))
            (if (f32.ne (f32.sub (local.get $d) (local.get $d)) (f32.const 0)) (then (local.set $err (i32.const 2)) (br $out)))))
        (local.set $addr (i32.add (i32.const 0x1000) (i32.shl (i32.sub (i32.wrap_i64 (local.get $next)) (local.get $base)) (i32.const 2))))
        (local.set $o (f32.load (local.get $addr)))
        (local.set $nw (f32.add (local.get $o) (local.get $d)))
        (f32.store (local.get $addr) (local.get $nw))
        (local.set $prev (local.get $next))
        (local.set $next (i64.const -1))
        (local.set $left (i32.sub (local.get $left) (i32.const 1)))
        ;; logged unless f32(new - d) gives the old value's bits back (and the old value is not
        ;; NaN): written at the next slot always, kept by counting it (no branch to mispredict;
        ;; a call logs at most the region's 8192 entries, which the log holds)
        (i32.store offset=0x9000 (i32.shl (local.get $nlog) (i32.const 2)) (i32.wrap_i64 (local.get $prev)))
        (i32.store offset=0x11000 (i32.shl (local.get $nlog) (i32.const 2)) (i32.reinterpret_f32 (local.get $o)))
        (local.set $nlog (i32.add (local.get $nlog) (i32.or
          (i32.ne (i32.reinterpret_f32 (f32.sub (local.get $nw) (local.get $d))) (i32.reinterpret_f32 (local.get $o)))
          (f32.ne (local.get $o) (local.get $o)))))
        ;; a weight made NaN or infinite (always logged above: its delta cannot be subtracted back)
        (if (f32.ne (f32.sub (local.get $nw) (local.get $nw)) (f32.const 0)) (then (local.set $err (i32.const 3)) (br $out)))
        (br_if $entry (local.get $left))))
    (i32.store (i32.const 0x40) (local.get $gp))
    (i32.store (i32.const 0x48) (local.get $vp))
    (i32.store (i32.const 0x4c) (local.get $left))
    (i64.store (i32.const 0x50) (local.get $prev))
    (i64.store (i32.const 0x58) (local.get $next))
    (i32.store (i32.const 0x64) (local.get $nlog))
    (i32.store (i32.const 0x68) (local.get $err)))

  ;; d(base, lim, codec, scale): "a" for a dense patch, whose entries are every position in
  ;; turn: the entries in [base, lim) follow the last one applied (state as for "a"; no gaps).
  (func (export "d") (param $base i32) (param $lim i32) (param $codec i32) (param $scale f32)
    (local $vp i32) (local $left i32) (local $pos i32) (local $end i32) (local $nlog i32) (local $err i32)
    (local $b i32) (local $h i32) (local $d f32) (local $o f32) (local $nw f32) (local $addr i32)
    (local.set $vp (i32.load (i32.const 0x48)))
    (local.set $left (i32.load (i32.const 0x4c)))
    ;; the first position not applied yet, and where this call stops
    (local.set $pos (i32.wrap_i64 (i64.add (i64.load (i32.const 0x50)) (i64.const 1))))
    (local.set $end (select (local.get $lim) (i32.add (local.get $pos) (local.get $left)) (i32.lt_u (local.get $lim) (i32.add (local.get $pos) (local.get $left)))))
    (block $out
      (br_if $out (i32.ge_u (local.get $pos) (local.get $end)))
      (loop $entry
        ;; the value
        (if (i32.eqz (local.get $codec))
          (then
            ;; half to single, exactly: a normal half's exponent and mantissa move to a single's
            ;; place (exponent + 112); a subnormal one (or zero) is mantissa * 2^-24; then the sign
            (local.set $h (i32.load16_u (local.get $vp)))
            (local.set $vp (i32.add (local.get $vp) (i32.const 2)))
            (local.set $b (i32.and (local.get $h) (i32.const 0x7c00)))
            (if (i32.eq (local.get $b) (i32.const 0x7c00)) (then (local.set $err (i32.const 2)) (br $out)))
            (if (local.get $b)
              (then (local.set $b (i32.add (i32.shl (i32.and (local.get $h) (i32.const 0x7fff)) (i32.const 13)) (i32.const 0x38000000))))
              (else (local.set $b (i32.reinterpret_f32 (f32.mul (f32.convert_i32_u (i32.and (local.get $h) (i32.const 0x3ff))) (f32.const 0x1p-24))))))
            (local.set $d (f32.reinterpret_i32 (i32.or (local.get $b) (i32.shl (i32.and (local.get $h) (i32.const 0x8000)) (i32.const 16))))))
          (else
            (if (i32.eq (local.get $codec) (i32.const 1))
              (then
                (local.set $d (f32.load (local.get $vp)))
                (local.set $vp (i32.add (local.get $vp) (i32.const 4))))
              (else
                (local.set $d (f32.mul (f32.convert_i32_s (i32.load8_s (local.get $vp))) (local.get $scale)))
                (local.set $vp (i32.add (local.get $vp) (i32.const 1)))))
            (if (f32.ne (f32.sub (local.get $d) (local.get $d)) (f32.const 0)) (then (local.set $err (i32.const 2)) (br $out)))))
        (local.set $addr (i32.add (i32.const 0x1000) (i32.shl (i32.sub (local.get $pos) (local.get $base)) (i32.const 2))))
        (local.set $o (f32.load (local.get $addr)))
        (local.set $nw (f32.add (local.get $o) (local.get $d)))
        (f32.store (local.get $addr) (local.get $nw))
        (local.set $pos (i32.add (local.get $pos) (i32.const 1)))
        (local.set $left (i32.sub (local.get $left) (i32.const 1)))
        ;; logged as in "a", without a branch
        (i32.store offset=0x9000 (i32.shl (local.get $nlog) (i32.const 2)) (i32.sub (local.get $pos) (i32.const 1)))
        (i32.store offset=0x11000 (i32.shl (local.get $nlog) (i32.const 2)) (i32.reinterpret_f32 (local.get $o)))
        (local.set $nlog (i32.add (local.get $nlog) (i32.or
          (i32.ne (i32.reinterpret_f32 (f32.sub (local.get $nw) (local.get $d))) (i32.reinterpret_f32 (local.get $o)))
          (f32.ne (local.get $o) (local.get $o)))))
        (if (f32.ne (f32.sub (local.get $nw) (local.get $nw)) (f32.const 0)) (then (local.set $err (i32.const 3)) (br $out)))
        (br_if $entry (i32.lt_u (local.get $pos) (local.get $end)))))
    (i32.store (i32.const 0x48) (local.get $vp))
    (i32.store (i32.const 0x4c) (local.get $left))
    (i64.store (i32.const 0x50) (i64.sub (i64.extend_i32_u (local.get $pos)) (i64.const 1)))
    (i32.store (i32.const 0x64) (local.get $nlog))
    (i32.store (i32.const 0x68) (local.get $err)))
)
