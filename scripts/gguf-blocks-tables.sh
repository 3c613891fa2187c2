#!/bin/sh
# The README's GGUF block tables (issues 19 and 20): compress with each quantizer, write the
# result in llama.cpp's block format, evaluate the file with sparq (and print one TSV line per
# run). Usage: scripts/gguf-blocks-tables.sh s3m|s260k|s260k-files OUTDIR
#   s3m:         stories3M, every block type, ggml's rounding vs sparq's RTN/GPTQ on ggml's grid
#   s260k-files: the same on stories260K from one source GGUF (float32, its vocabulary inside)
#   s260k:       stories260K's grids evaluated in memory (all linear layers quantized, the
#                172-wide ffn_down too, which a GGUF keeps f16)
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
D=${SPARQ_DATA:-$here/../shared/data}
S=$here/sparq
which=$1 out=$2
mkdir -p "$out"
# stories3M: the first 200 TinyStories documents and 200 WikiText-2 windows, as its sweeps
LIMIT=""
[ "$which" = s3m ] && LIMIT="--limit 200"
TS=$D/text/TinyStories-valid-first1000.txt
WT=$D/text/wiki.test.raw
# CALIB=self: calibrate on the model's own samples instead of C4
CAL="--calib ${CALIB:-$D/text/c4-en-train-first1000.jsonl} --nsamples 128 --calib-seqlen 256 --seed 0"
ppl() { python3 -c 'import json,sys; p=json.load(sys.stdin)["ppl"]; p=p if isinstance(p,float) else list(p.values())[0]["ppl"]; print("%.4f" % p)'; }
case $which in
s3m) M=$D/stories3M/stories3M-q80.bin ;;
s260k) M=$D/stories260K/stories260K.bin ;;
s260k-files)
    M=$out/stories260K-f32.gguf
    $S convert --model "$D/stories260K/stories260K.bin" --tokenizer "$D/stories260K/tok512.bin" --out "$M" > /dev/null ;;
*) echo "usage: $0 s3m|s260k|s260k-files OUTDIR" >&2; exit 2 ;;
esac
# name | dtype (or "-": evaluated in memory, no file) | compress options
run() {
    name=$1 dt=$2; shift 2
    if [ "$dt" = - ]; then
        $S compress --model "$M" $CAL "$@" --eval "$TS" --protocol documents --seqlen 512 $LIMIT --json > "$out/$name.json"
        a=$(ppl < "$out/$name.json")
        $S compress --model "$M" $CAL "$@" --eval "$WT" --protocol windows --seqlen 256 $LIMIT --json > "$out/$name.wt.json"
        b=$(ppl < "$out/$name.wt.json")
        printf '%s\t-\t-\t%s\t%s\n' "$name" "$a" "$b"
        return
    fi
    $S compress --model "$M" $CAL "$@" --out "$out/$name.gguf" --dtype "$dt" --json > "$out/$name.json"
    bpw=$(python3 -c 'import json,sys; f=json.load(sys.stdin)["file"]; print("%.3f\t%.0f" % (f["linear_bits_per_weight"], f["bytes"]/1024))' < "$out/$name.json")
    a=$($S eval --model "$out/$name.gguf" --text "$TS" --protocol documents --seqlen 512 $LIMIT --json | ppl)
    b=$($S eval --model "$out/$name.gguf" --text "$WT" --protocol windows --seqlen 256 $LIMIT --json | ppl)
    printf '%s\t%s\t%s\t%s\n' "$name" "$bpw" "$a" "$b"
}
if [ "$which" != s260k ]; then
    for t in q4_0 q4_1 q5_0 q5_1 q8_0; do
        case $t in q4_0) o="--bits 4 --sym";; q4_1) o="--bits 4";; q5_0) o="--bits 5 --sym";;
                   q5_1) o="--bits 5";; q8_0) o="--bits 8 --sym";; esac
        run "rtn-ggml-$t" $t --solver rtn $o --group 32 --ggml $t
        run "rtn-grid-$t" $t --solver rtn $o --group 32 --grid ggml
        run "gptq-$t" $t --solver gptq $o --group 32 --grid ggml
        run "gptq-ao-$t" $t --solver gptq $o --group 32 --grid ggml --act-order --static-groups
    done
else
    for nb in 4 5; do
        run "rtn-minmax-$nb" - --solver rtn --bits $nb --group 32 --sym
        run "rtn-ggml-q${nb}_0" - --solver rtn --bits $nb --group 32 --sym --ggml q${nb}_0
        run "rtn-grid-q${nb}_0" - --solver rtn --bits $nb --group 32 --sym --grid ggml
        run "gptq-minmax-${nb}" - --solver gptq --bits $nb --group 32 --sym
        run "gptq-grid-q${nb}_0" - --solver gptq --bits $nb --group 32 --sym --grid ggml
        run "gptq-ao-grid-q${nb}_0" - --solver gptq --bits $nb --group 32 --sym --grid ggml --act-order --static-groups
    done
fi
