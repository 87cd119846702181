;; The hashed-patch apply kernel in WebAssembly SIMD (four weights per step). Assembled by
;; scripts/build-hash-kernel.ts into src/core/hash-kernel-wasm.ts; the glue is hash-kernel.ts.
;; Per weight i (see docs/FORMAT-hashing.md and the pure-JS loops in patch-math.ts):
;;   h = xxh32(u32le(i), seed)          (base = seed + P5 + 4, then the 4-byte round + avalanche)
;;   r = (h >>> 1) % nb                 (exact: multiply-high by a 32-bit magic, see below)
;;   d = b[r], its sign bit flipped when (h & signMask) (and once more when undoing)
;;   w[i] = f32(w[i] + d)
;; and, when logging, the positions where f32(new - d) is not the old value bit for bit (or the
;; old value is NaN), with the old bits.
;;
;; Memory (byte offsets): [0, 64K) the weight chunk (16384 weights, patched in place);
;; [64K, 128K) exception positions; [128K, 192K) exception old bits; [192K, ...) the buckets.
;; Imports its memory ("e" "m", at least 4 pages), made by the glue as large as the buckets need:
;; the glue never grows it (growing a memory detaches its buffer, after which V8 runs every
;; typed-array loop of the process more slowly). Exports the function "k".
(module
  (import "e" "m" (memory 4))
  ;; k(n, p, base, sm, neg, nb, m, s, log) -> exceptions written
  ;;   n     weights in the chunk (1..16384); lanes past n are computed but never logged
  ;;   p     position of the chunk's first weight in the tensor
  ;;   sm    1 when the patch is signed, else 0
  ;;   neg   0x80000000 to subtract the deltas (undo), else 0
  ;;   nb    the bucket count, >= 2 (one bucket is given as two equal ones)
  ;;   m, s  bucket = x - nb * (mulhi(x, m) >>> s) for x = h >>> 1 < 2^31: with
  ;;         l = ceil(log2 nb) >= 1, m = ceil(2^(31+l) / nb) < 2^32 and s = l - 1 the quotient
  ;;         is exact for every x < 2^31 (the rounding error x*e/(nb*2^(31+l)) < 1/nb)
  ;;   log   1 to log exceptions
  (func (export "k")
    (param $n i32) (param $p i32) (param $base i32) (param $sm i32) (param $neg i32)
    (param $nb i32) (param $m i32) (param $s i32) (param $log i32)
    (result i32)
    (local $a i32) (local $end i32) (local $cnt i32) (local $bad i32) (local $j i32)
    (local $hv v128) (local $h v128) (local $x v128) (local $r v128)
    (local $d v128) (local $o v128) (local $nw v128) (local $back v128)
    (local $mv v128) (local $nbv v128) (local $smv v128) (local $negv v128)
    (local $p2 v128) (local $p3 v128) (local $p4 v128) (local $p3x4 v128)
    (local.set $p2 (i32x4.splat (i32.const 0x85ebca77)))
    (local.set $p3 (i32x4.splat (i32.const 0xc2b2ae3d)))
    (local.set $p4 (i32x4.splat (i32.const 0x27d4eb2f)))
    (local.set $p3x4 (i32x4.shl (local.get $p3) (i32.const 2)))
    ;; hv = base + (p + lane) * P3, stepped by 4 * P3 per step
    (local.set $hv
      (i32x4.add
        (i32x4.splat (local.get $base))
        (i32x4.mul
          (i32x4.add (i32x4.splat (local.get $p)) (v128.const i32x4 0 1 2 3))
          (local.get $p3))))
    (local.set $mv (i32x4.splat (local.get $m)))
    (local.set $nbv (i32x4.splat (local.get $nb)))
    (local.set $smv (i32x4.splat (local.get $sm)))
    (local.set $negv (i32x4.splat (local.get $neg)))
    (local.set $end (i32.shl (i32.and (i32.add (local.get $n) (i32.const 3)) (i32.const -4)) (i32.const 2)))
    (loop $step
      ;; xxh32 of the 4-byte position: rotl 17, * P4, then the avalanche
      (local.set $h
        (i32x4.mul
          (v128.or (i32x4.shl (local.get $hv) (i32.const 17)) (i32x4.shr_u (local.get $hv) (i32.const 15)))
          (local.get $p4)))
      (local.set $h (i32x4.mul
        (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 15)))
        (local.get $p2)))
      (local.set $h (i32x4.mul
        (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 13)))
        (local.get $p3)))
      (local.set $h (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 16))))
      ;; bucket byte offsets: 4 * (x - nb * (mulhi(x, m) >>> s))
      (local.set $x (i32x4.shr_u (local.get $h) (i32.const 1)))
      (local.set $r
        (i32x4.shl
          (i32x4.sub
            (local.get $x)
            (i32x4.mul
              (i32x4.shr_u
                (i8x16.shuffle 4 5 6 7 12 13 14 15 20 21 22 23 28 29 30 31
                  (i64x2.extmul_low_i32x4_u (local.get $x) (local.get $mv))
                  (i64x2.extmul_high_i32x4_u (local.get $x) (local.get $mv)))
                (local.get $s))
              (local.get $nbv)))
          (i32.const 2)))
      ;; gather the four buckets
      (local.set $d (v128.load32_zero offset=196608 (i32x4.extract_lane 0 (local.get $r))))
      (local.set $d (v128.load32_lane offset=196608 1 (i32x4.extract_lane 1 (local.get $r)) (local.get $d)))
      (local.set $d (v128.load32_lane offset=196608 2 (i32x4.extract_lane 2 (local.get $r)) (local.get $d)))
      (local.set $d (v128.load32_lane offset=196608 3 (i32x4.extract_lane 3 (local.get $r)) (local.get $d)))
      ;; the sign: flip the sign bit when (h & sm), and once more when undoing
      (local.set $d
        (v128.xor (local.get $d)
          (v128.xor (i32x4.shl (v128.and (local.get $h) (local.get $smv)) (i32.const 31)) (local.get $negv))))
      (local.set $o (v128.load (local.get $a)))
      (local.set $nw (f32x4.add (local.get $o) (local.get $d)))
      (if (local.get $log)
        (then
          ;; exact when f32(new - d) equals the old value as a float and as bits (NaN never is)
          (local.set $back (f32x4.sub (local.get $nw) (local.get $d)))
          (local.set $back
            (v128.and (f32x4.eq (local.get $back) (local.get $o)) (i32x4.eq (local.get $back) (local.get $o))))
          (if (i32.eqz (i32x4.all_true (local.get $back)))
            (then
              (local.set $bad (i32.xor (i32x4.bitmask (local.get $back)) (i32.const 15)))
              (loop $lane
                (local.set $j (i32.add (local.get $a) (i32.shl (i32.ctz (local.get $bad)) (i32.const 2))))
                (if (i32.lt_u (local.get $j) (i32.shl (local.get $n) (i32.const 2)))
                  (then
                    (i32.store offset=65536 (i32.shl (local.get $cnt) (i32.const 2))
                      (i32.add (local.get $p) (i32.shr_u (local.get $j) (i32.const 2))))
                    (i32.store offset=131072 (i32.shl (local.get $cnt) (i32.const 2)) (i32.load (local.get $j)))
                    (local.set $cnt (i32.add (local.get $cnt) (i32.const 1)))))
                (local.set $bad (i32.and (local.get $bad) (i32.sub (local.get $bad) (i32.const 1))))
                (br_if $lane (local.get $bad)))))))
      (v128.store (local.get $a) (local.get $nw))
      (local.set $hv (i32x4.add (local.get $hv) (local.get $p3x4)))
      (local.set $a (i32.add (local.get $a) (i32.const 16)))
      (br_if $step (i32.lt_u (local.get $a) (local.get $end))))
    (local.get $cnt)))
