#!/bin/sh
# Download the test data into $SPARQ_DATA (default: shared/data beside this checkout) from the upstream snapshots
# listed in the data README, and check every sha256. For machines outside this environment.
set -eu
D=${SPARQ_DATA:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}
raw() { echo "https://raw.githubusercontent.com/$1/$2/$3"; }
fetch() {   # dest sha256 url
    mkdir -p "$(dirname "$D/$1")"
    if [ -f "$D/$1" ] && echo "$2  $D/$1" | sha256sum -c --status; then return; fi
    echo "fetching $1" >&2
    curl -fsSL "$3" -o "$D/$1.part"
    echo "$2  $D/$1.part" | sha256sum -c --status || { echo "sha256 mismatch for $1" >&2; rm -f "$D/$1.part"; exit 1; }
    mv "$D/$1.part" "$D/$1"
}
Y=ytmytm/llama2.c64; YC=12b5bec82eb980362b8a7bfe86992a552a492481
fetch stories260K/stories260K.bin b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696 "$(raw $Y $YC stories260K.bin)"
fetch stories260K/tok512.bin 037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312 "$(raw $Y $YC tok512.bin)"
fetch stories260K/tok512.model 822b28dcdee7b4f2de3332e0066a3f33688e08afb26e9e7808a58aa6426bd55b \
    "$(raw dratman/llama2.c f73917c56c4fa331b08f7d00db768a34c4c51a0a data/tok512.model)"
fetch llama2-tokenizer/tokenizer.bin 50a52ef822ee9e83de5ce9d0be0a025a773d019437f58b5ff9dcafb063ece361 \
    "$(raw karpathy/llama2.c d9862069e7ef665fe6309e3c17398ded2f121bf5 tokenizer.bin)"
fetch gguf/llama-2-tiny-random.gguf 81f226c62d28ed4a1a9b9fa080fcd9f0cc40e0f9d5680036583ff98fbcd035cb \
    "$(raw ollama/ollama 87a88cc8f923eb0d8b65c45a4b31cd87b34ee5b1 api/data/llama-2-tiny-random.gguf)"
fetch text/TinyStories-valid-first1000.txt c86f734a3a07fffb8a52f4a7970ac7dbeaf4eaf6a031dc8742a8de92fbbb9446 \
    "$(raw BhargavKumarNath/NanoGPT 25e02c8a2de871dc40affb4c68a5346154adf80e data_corpus/tinystories_val.txt)"
fetch text/c4-en-train-first1000.jsonl cdd5b754119131d2934e3e799a059a9d64f53a6aac9e7e2ef79b43120bb01a32 \
    "$(raw Diffusion-bachelor/diffusion-data-constraint-rare-events 3913b80a5e0bf71e98f97db094dca6d226e4d9ee data/c4_sample.jsonl)"
P=ybisk/ybisk.github.io; PC=21edab439af693b961be2f069e8690a88d3b4e37
fetch tasks/piqa/valid.jsonl 93503cc97c679e459b065c3d13e848282e44b2a25213985bed3e5d458abef72d "$(raw $P $PC piqa/data/valid.jsonl)"
fetch tasks/piqa/valid-labels.lst b4192dc3a2a0363d9d60ccf79800cbbe2f32ebb17726efdde6970e0b8131bceb "$(raw $P $PC piqa/data/valid-labels.lst)"
A=FormulaMonks/llm-benchmarker-suite; AC=5d3c8009ab8f5adab4899c34dd203cbf7afcb372
fetch tasks/arc/ARC-Easy-Test.jsonl ce32a0774b4beb1977d2c6b16dda5dd2b24fdc9c7f506882c452678676bd09be "$(raw $A $AC data/ARC/ARC-e/ARC-Easy-Test.jsonl)"
fetch tasks/arc/ARC-Easy-Dev.jsonl f4364b808a68df6bf500ce1070fb0105d40cacd2391c210deb00ff83ba75d1f4 "$(raw $A $AC data/ARC/ARC-e/ARC-Easy-Dev.jsonl)"
fetch tasks/arc/ARC-Challenge-Test.jsonl 9fa8ffb3e3a1f88cb302d53dd95aae81e39209ad9bcf974376b319d8fd35717c "$(raw $A $AC data/ARC/ARC-c/ARC-Challenge-Test.jsonl)"
fetch tasks/arc/ARC-Challenge-Dev.jsonl 55224364abd2477f66a9a57c5cbef109fb71d83019aa5e37aec0e7ab757746ca "$(raw $A $AC data/ARC/ARC-c/ARC-Challenge-Dev.jsonl)"
fetch tasks/boolq/val.jsonl 21acbfbd1e7908fddd9e626bc2a6101c5a5430bda3fbf74985b979af7a63b989 "$(raw $A $AC data/SuperGLUE/BoolQ/val.jsonl)"
fetch tasks/hellaswag/hellaswag_val_sample1000.jsonl 79b87117cffba9878961284f233797c5ebeba4193cb48a93eabc4a5a1156cc45 \
    "$(raw RubriksCube/rubriks_cube cf806235148c20b035c43cd160d56de8b5e2cd70 data/hellaswag.jsonl)"
W=Anthony-Alridge/wsc; WC=904a14d67f8e6f98f54892fe05fe0b5c89bd20ae
fetch tasks/winogrande/dev.jsonl 1aeac79cf46a3dcbe59a71ca7e5372a1490cde2b4ae2387dc56f00378104d2e8 "$(raw $W $WC data/dev.jsonl)"
fetch tasks/winogrande/dev-labels.lst 5ae1e30f52a50b880515685dcfae7d57649cce256d375947cdd02f687de7e6ba "$(raw $W $WC data/dev-labels.lst)"
fetch tasks/lambada/lambada_test.jsonl 4aa8d02cd17c719165fc8a7887fddd641f43fcafa4b1c806ca8abc31fabdb226 \
    "$(raw cybertronai/bflm 620fff70127e0a7c741ee229ed2e33e25dd5185a lambada_test.jsonl)"
# wiki.test.raw has no public byte-exact copy (data README: reassembled from two); it is
# checked here but must be obtained as the README describes.
if ! echo "173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08  $D/text/wiki.test.raw" | sha256sum -c --status 2>/dev/null; then
    echo "text/wiki.test.raw: missing or different; rebuild it as $D/README.md describes" >&2
fi
echo "data ready in $D" >&2
