#!/usr/bin/env python3
"""Generate the text models (with their tokenizer), the image-preprocessing digits model, and their
reference outputs.

Everything text-related starts from a small synthetic corpus this script writes itself (template
sentences, fixed seed): short product-style reviews, positive or negative, about four topics
(sports, weather, food, tech), and sentences naming people and cities, with the character spans
of those names. A BERT WordPiece tokenizer is trained on it: a `tokenizers` Tokenizer with
BertNormalizer (lowercasing, accents stripped), BertPreTokenizer, a WordPiece model of 2000
entries ([PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, added as special tokens), the post-processor
"[CLS] $A [SEP]" / "[CLS] $A [SEP] $B:1 [SEP]:1" and the WordPiece decoder; no truncation or
padding in tokenizer.json (the engine sets them). Its vocabulary is what tokenizers'
WordPieceTrainer learns, computed by this script in a fixed order (wordpiece_vocab: the trainer
itself learns a different vocabulary on every run). The models are tiny BERTs (hidden 64,
2 layers, 2 heads, intermediate 256, 128 positions, vocabulary = the tokenizer's) built from
configs and trained here for a few epochs (seconds on one CPU thread, fixed seeds); nothing is
downloaded from a model hub. Writes, relative to the repository root:

Demo model repository:

    models/text_classifier/v1/{model.onnx,model.toml,tokenizer.json}
        BertForSequenceClassification trained on the reviews' sentiment (80% of them; with an
        auxiliary topic head on the mean-pooled encoder output during training only, so that
        sentence_embedder's embeddings carry the topic), labels ["negative", "positive"];
        inputs `input_ids`, `attention_mask`, `token_type_ids` INT64 [batch, sequence], output
        `logits` FP32 [batch, 2]; the manifest tokenizes text ([preprocess] tokenizer,
        max_length 64) and answers a classification (softmax)
    models/sentence_embedder/v1/{model.onnx,model.toml,tokenizer.json}
        BertModel with text_classifier's encoder weights, output `last_hidden_state` FP32
        [batch, sequence, 64]; the manifest answers the attention-masked mean, L2-normalised
    models/topic_classifier/v1/{model.onnx,model.toml}
        scikit-learn LogisticRegression on sentence_embedder's embeddings (computed by
        onnxruntime on the written sentence_embedder model) of the reviews, classes = the four
        topics; skl2onnx without ZipMap: input `embedding` FP32 [batch, 64], outputs `label` INT64
        [batch] and `probabilities` FP32 [batch, 4]
    models/text_topic/v1/model.toml
        a pipeline: sentence_embedder:v1, then topic_classifier:v1 (no model file)
    models/digits_cnn/v2/{model.onnx,model.toml}
        a byte-for-byte copy of models/digits_cnn/v1/model.onnx (written by
        scripts/gen_torch_models.py) whose manifest takes an image ([preprocess.image]: 8x8,
        grayscale, NCHW, mean 0, std 1) and answers a classification over "0".."9"

Test-only fixtures:

    testdata/models/token_tagger/v1/{model.onnx,model.toml,tokenizer.json}
        BertForTokenClassification trained on 80% of the 800 name sentences and 266 reviews
        (no names: all "O"; a name's first token is B-, its other tokens, subwords too, I-),
        labels ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]; output `logits` FP32
        [batch, sequence, 5]; the manifest answers token classification
    testdata/text/corpus.jsonl
        the corpus: one JSON object a line, {"text", "topic", "sentiment"} for a review,
        {"text", "entities": [[start, end, "PER" | "LOC"], ...]} for a name sentence
    testdata/images/digits/digit-<i>.png
        8-bit grayscale PNGs of sklearn's 8x8 digits from the test split digits_cnn uses (pixel =
        round(v * 255 / 16) of the 0..16 value): digit-0 .. digit-9 the first test image of that
        class the model gets right, digit-10 the first one it gets wrong

Reference outputs (compact JSON; floats rounded to 6 decimals):

    testdata/expected/text_classifier-v1.json
        {"model", "version", "max_length", "cases": [{"name", "data", "input_ids",
        "attention_mask", "token_type_ids", "input_ids_unpadded", "result"}]}, cases single,
        list, pair, pairs, long, long_list and unknown_words: `data` is what a
        client sends as /predict "data"; the ids are what transformers' PreTrainedTokenizerFast
        gives with truncation=True, max_length=64, padding="longest" (one row per example,
        `input_ids_unpadded` each row alone); `result` one {"label", "score", "scores"} per
        example (an object for a single text or pair, a list for a list), the softmax of
        onnxruntime's logits on those ids
    testdata/expected/sentence_embedder-v1.json
        the same fields, `result` {"embedding": [...]} per example
    testdata/expected/token_tagger-v1.json
        the same fields, `result` {"tokens": [{"token", "label", "score", "start", "end"}],
        "entities": [{"entity", "score", "start", "end", "text"}]} per example: every
        non-special token with its argmax label, that label's softmax probability and its
        character offsets (Python string indices, not UTF-8 byte offsets), and the entities
        grouped like transformers' token-classification pipeline with
        aggregation_strategy="simple" (checked against that pipeline here)
    testdata/expected/text_topic-v1.json
        `result` topic_classifier's {"label", "score", "scores"} (its probabilities, no softmax)
        on sentence_embedder's embedding, per example
    testdata/expected/digits_cnn-v2.json
        {"model", "version", "cases": [{"file", "target", "label", "scores"}]}: the PNG decoded by
        Pillow, / 255, as [1, 1, 8, 8], through onnxruntime, softmax

The torch models are exported like scripts/gen_torch_models.py does (dynamo exporter, dynamic
batch and sequence axes, every tensor inline, node metadata dropped) and onnxruntime's outputs are
compared with PyTorch eager; each request's result is also checked to be the same alone as padded
in its batch. Reference outputs are onnxruntime (CPUExecutionProvider) runs of the written files.

Setup and run (from the repository root):

    python3 -m venv /tmp/venv-text-models
    /tmp/venv-text-models/bin/pip install -r scripts/requirements-torch-models.txt \
        -r scripts/requirements-models.txt
    /tmp/venv-text-models/bin/python scripts/gen_text_image_models.py

(models/digits_cnn/v1/model.onnx must exist: scripts/gen_torch_models.py writes it.) The outputs
are committed, so building and testing the server never needs Python, and this script never runs
in CI; rerun it only to change these models. Every seed is fixed and PyTorch runs single-threaded
with deterministic algorithms, so a rerun with the pinned versions rewrites the same files.
"""

from __future__ import annotations

import json
import random
import re
import sys
import tempfile
import time
import tomllib
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx_fixtures as fx
import torch
import transformers
from PIL import Image
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    PreTrainedTokenizerFast,
)

ROOT = fx.ROOT
MODELS = ROOT / "models"
TEST_MODELS = ROOT / "testdata" / "models"
EXPECTED = fx.EXPECTED
CORPUS_FILE = ROOT / "testdata" / "text" / "corpus.jsonl"
DIGIT_IMAGES = ROOT / "testdata" / "images" / "digits"
SEED = 0
MAX_LENGTH = 64
VOCAB_SIZE = 2000
BATCHING = {"max_batch_size": 32, "max_delay_ms": 2}
# |onnxruntime - torch eager| allowed; also |alone - padded in a batch| of a result
TOLERANCE = 1e-4
TEXT_MAX_BYTES = 2 * 1024 * 1024
DECIMALS = 6
TEXT_INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PREFIX = "##"  # WordPiece's continuing-subword prefix
# The skl2onnx op-sets of scripts/gen_models.py's onnxruntime models
ORT_TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}

SENTIMENTS = ["negative", "positive"]
TOPICS = ["sports", "weather", "food", "tech"]
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]

BATCH = torch.export.Dim("batch")
SEQUENCE = torch.export.Dim("sequence")

warnings.filterwarnings("ignore", category=FutureWarning)
transformers.logging.set_verbosity_error()


# --------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------

SUBJECTS = {
    "sports": [
        "the match", "the game", "the final", "the team", "our coach", "the stadium",
        "the tennis tournament", "the football season", "the marathon", "the referee",
        "the basketball league", "the goalkeeper", "the cycling race", "the swimming club",
        "the ski trip", "the golf course", "the boxing fight", "the hockey team",
        "the rugby squad", "the new running shoes", "the training session", "the yoga class",
        "the baseball game", "the chess championship", "the volleyball tournament",
        "the rowing regatta", "the climbing gym", "the wrestling match", "the cricket test",
        "the archery contest", "the sailing week", "the gymnastics display",
        "the skateboard park", "the fitness tracker", "the penalty shootout",
        "the olympic qualifier",
    ],
    "weather": [
        "the weather", "the forecast", "the morning sky", "the storm", "the summer heat",
        "the winter", "the rain", "the wind", "the sunshine", "the snow", "the humidity",
        "the spring weather", "the autumn fog", "the temperature", "the thunderstorm",
        "the heatwave", "the breeze", "the drizzle", "the frost", "the sunset",
        "the cloudy afternoon", "the weekend weather", "the hail", "the monsoon",
        "the blizzard", "the hurricane", "the rainbow", "the sleet", "the tornado warning",
        "the drought", "the overcast morning", "the barometer", "the lightning",
        "the midday warmth", "the evening chill", "the seasonal outlook",
    ],
    "food": [
        "the pizza", "the pasta", "the soup", "the restaurant", "the chef", "the dessert",
        "the coffee", "the bread", "the salad", "the burger", "the sushi", "the breakfast",
        "the chocolate cake", "the curry", "the waiter", "the menu", "the steak",
        "the noodles", "the sandwich", "the ice cream", "the bakery", "the dinner", "the tea",
        "the cheese", "the lasagna", "the croissant", "the omelette", "the dumplings",
        "the barbecue", "the lemonade", "the smoothie", "the vegetarian platter",
        "the seafood buffet", "the tacos", "the pancakes", "the risotto",
    ],
    "tech": [
        "the laptop", "the phone", "the battery", "the new update", "the app", "the keyboard",
        "the screen", "the camera", "the software", "the headphones", "the charger",
        "the tablet", "the printer", "the router", "the smartwatch", "the speaker",
        "the website", "the game console", "the mouse", "the monitor", "the operating system",
        "the cloud service", "the processor", "the smart television", "the graphics card",
        "the webcam", "the microphone", "the bluetooth adapter", "the hard drive",
        "the projector", "the vacuum robot", "the virtual assistant", "the password manager",
        "the antivirus program", "the spreadsheet editor", "the wireless earbuds",
    ],
}
ADJECTIVES = {
    "positive": [
        "great", "excellent", "wonderful", "amazing", "fantastic", "delightful", "superb",
        "brilliant", "lovely", "perfect", "impressive", "enjoyable", "pleasant", "outstanding",
        "good", "fun", "marvelous", "splendid", "charming", "remarkable", "stunning",
        "flawless", "terrific", "magnificent", "satisfying", "refreshing", "exceptional",
        "phenomenal",
    ],
    "negative": [
        "terrible", "awful", "horrible", "disappointing", "boring", "dreadful", "poor", "bad",
        "annoying", "useless", "miserable", "frustrating", "mediocre", "unpleasant", "dull",
        "awkward", "pathetic", "lousy", "appalling", "tedious", "unbearable", "atrocious",
        "shoddy", "lackluster", "abysmal", "disgraceful", "infuriating", "worthless",
    ],
}
RECOMMEND = {
    "positive": ["recommend", "happily recommend", "definitely recommend"],
    "negative": ["never recommend", "not recommend", "warn everyone about"],
}
INTENSIFIERS = ["really", "very", "truly", "quite", "so", "incredibly", "rather", "extremely"]
DETAILS = {
    ("sports", "positive"): [
        "we won easily", "the crowd cheered all night", "the players looked strong",
        "every goal was beautiful", "the tickets were cheap", "our team played with passion",
        "the fans sang together", "the victory felt amazing", "the striker scored twice",
        "the atmosphere was electric", "our captain inspired everybody",
        "the comeback was unforgettable",
    ],
    ("sports", "negative"): [
        "we lost again", "the players looked tired", "the crowd left early",
        "the tickets cost too much", "nobody scored at all", "the coach made silly mistakes",
        "the pitch was a mess", "the season ended in defeat", "the defence collapsed",
        "the umpire ignored obvious fouls", "our goalkeeper dropped the ball",
        "the spectators booed constantly",
    ],
    ("weather", "positive"): [
        "the sun was warm", "the sky stayed clear", "we had a picnic outside",
        "the air felt fresh", "the beach was perfect", "a gentle breeze kept us cool",
        "the stars were bright", "the flowers bloomed early", "the meadows glowed golden",
        "the temperature stayed mild", "children played in the park",
        "the lake sparkled beautifully",
    ],
    ("weather", "negative"): [
        "it rained all day", "the roads were flooded", "the wind broke our fence",
        "we were stuck indoors", "the cold was bitter", "the flights were cancelled",
        "the fog never lifted", "the heat was unbearable", "icy sidewalks caused accidents",
        "the basement flooded overnight", "power lines snapped",
        "thick smog covered everything",
    ],
    ("food", "positive"): [
        "it tasted delicious", "the portions were generous", "the service was friendly",
        "every bite was fresh", "the flavors were rich", "the prices were fair",
        "the sauce was perfect", "we ordered seconds", "the herbs smelled wonderful",
        "the pastry melted beautifully", "the cocktails were creative",
        "the vegetables were crunchy",
    ],
    ("food", "negative"): [
        "it was cold and bland", "the portions were tiny", "the service was rude",
        "the meat was burnt", "we waited an hour", "the kitchen was dirty", "it tasted stale",
        "the bill was outrageous", "the fries were soggy", "the waitress ignored everyone",
        "the dessert was frozen solid", "the noodles were overcooked",
    ],
    ("tech", "positive"): [
        "it works fast", "the battery lasts all week", "setup took a minute",
        "the design is sleek", "the display is sharp", "it never crashes",
        "the sound is crisp", "the price was reasonable", "the interface feels intuitive",
        "downloads finish instantly", "the firmware improved everything",
        "the keyboard backlight looks elegant",
    ],
    ("tech", "negative"): [
        "it keeps crashing", "the battery died in an hour", "setup took forever",
        "the buttons feel cheap", "the screen cracked quickly", "support never answered",
        "the update deleted my files", "it overheats constantly",
        "the touchscreen stopped responding", "the wifi disconnects hourly",
        "the fan sounds like a jet engine", "the subscription doubled unexpectedly",
    ],
}
REVIEW_TEMPLATES = [
    "{S} was {a}.",
    "{S} was {i} {a}!",
    "I thought {s} was {a}, {d}.",
    "Honestly, {s} is {i} {a} and {d}.",
    "{S} was {a}: {d}.",
    "{D}, so {s} was {a}.",
    "What a {a} experience, {d}!",
    "My review: {s} was {i} {a}.",
    "I found {s} {a} because {d}.",
    "{S}? {A}. {D}.",
    "Overall {s} felt {a} and {d}.",
    "I would {r} {s} to anyone, {d}.",
    "{S} was {i} {a}, {d}.",
]
FIRST_NAMES = [
    "Alice", "Bob", "Carlos", "Diana", "Emma", "Farid", "Grace", "Hiro", "Isabel", "James",
    "Kofi", "Laura", "Mohamed", "Nina", "Oliver", "Priya", "Quentin", "Rosa", "Samuel", "Tara",
    "Umar", "Valentina", "William", "Xavier", "Yuki", "Zara", "Maria", "Peter", "Sofia",
    "Daniel", "Amelia", "Bernardo", "Chiara", "Dmitri", "Elena", "Fatima", "Gustavo", "Hannah",
    "Ibrahim", "Jasmine", "Kenji", "Leonardo", "Mariana", "Nikolai", "Olga", "Pablo", "Rashid",
    "Sebastian", "Theodora", "Viktor", "Wilhelmina", "Yasmin", "Zeynep", "Ahmed", "Beatrice",
    "Cristina", "Dominic", "Esther", "Francesca", "Gabriel",
]
LAST_NAMES = [
    "Johnson", "Smith", "Garcia", "Brown", "Tanaka", "Okafor", "Rossi", "Novak", "Silva", "Kim",
    "Patel", "Martin", "Dubois", "Jensen", "Kowalski", "Nguyen", "Lopez", "Schmidt", "Ivanova",
    "Haddad", "Moreau", "Andersson", "Costa", "Walker", "Chen", "Fischer", "Murphy", "Sato",
    "Hansen", "Romero", "Alvarez", "Bergstrom", "Castellano", "Delacroix", "Eriksen",
    "Fitzgerald", "Gonzalez", "Hoffmann", "Iwasaki", "Jablonski", "Kuznetsov", "Lindqvist",
    "Mendoza", "Nakamura", "Oyelaran", "Petrovic", "Quintero", "Rasmussen", "Sandoval",
    "Takahashi", "Underwood", "Vasquez", "Whitfield", "Yamamoto", "Zimmermann", "Abernathy",
    "Bianchi", "Chowdhury", "Dimitrov", "Esposito",
]
CITIES = [
    "Paris", "London", "Berlin", "Madrid", "Rome", "Tokyo", "Lagos", "Nairobi", "Cairo",
    "Toronto", "Chicago", "Boston", "Seattle", "Sydney", "Melbourne", "Mumbai", "Delhi",
    "Lisbon", "Vienna", "Prague", "Dublin", "Oslo", "Helsinki", "Warsaw", "Athens", "Istanbul",
    "Seoul", "Lima", "New York", "San Francisco", "Los Angeles", "Buenos Aires", "Hong Kong",
    "Mexico City", "Rio de Janeiro", "Cape Town", "Kuala Lumpur", "Tel Aviv", "Amsterdam",
    "Barcelona", "Copenhagen", "Edinburgh", "Frankfurt", "Glasgow", "Hamburg", "Johannesburg",
    "Kyoto", "Marrakesh", "Montreal", "Nashville", "Philadelphia", "Reykjavik", "Stockholm",
    "Singapore", "Vancouver", "Wellington", "Zurich", "Bangalore", "Casablanca", "Budapest",
    "Bucharest", "Santiago", "Montevideo", "Salt Lake City", "Abu Dhabi", "Ho Chi Minh City",
]
NAME_TEMPLATES = [
    "{P} lives in {L}.",
    "{P} flew from {L} to {L} last week.",
    "Yesterday {P} met {P} in {L}.",
    "{P} works for a small company in {L}.",
    "The weather in {L} was lovely, said {P}.",
    "{P} moved to {L} in the spring.",
    "My friend {P} visited {L} twice.",
    "{P} and {P} watched the match in {L}.",
    "Last summer {P} opened a bakery near {L}.",
    "{P} called from {L} this morning.",
    "We drove with {P} to {L}.",
    "{L} is where {P} grew up.",
    "The restaurant in {L} that {P} loves is closed.",
    "{P} says {L} has the best coffee.",
    "Tomorrow {P} will present the results in {L}.",
    "{P} was born in {L} but lives in {L} now.",
    "According to {P}, {L} is beautiful in autumn.",
    "A new phone shop opened in {L}, {P} told me.",
    "Did {P} enjoy the trip to {L}?",
]
REVIEWS_PER_CLASS = 110  # per (topic, sentiment)
NAME_SENTENCES = 800


def review(rng: random.Random, topic: str, sentiment: str) -> str:
    subject = rng.choice(SUBJECTS[topic])
    adjective = rng.choice(ADJECTIVES[sentiment])
    detail = rng.choice(DETAILS[(topic, sentiment)])
    fill = {
        "s": subject,
        "S": subject[0].upper() + subject[1:],
        "a": adjective,
        "A": adjective.capitalize(),
        "i": rng.choice(INTENSIFIERS),
        "d": detail,
        "D": detail[0].upper() + detail[1:],
        "r": rng.choice(RECOMMEND[sentiment]),
    }
    return rng.choice(REVIEW_TEMPLATES).format(**fill)


def name_sentence(rng: random.Random) -> tuple[str, list[list]]:
    """A sentence naming people and cities, with the [start, end, "PER" | "LOC"] spans."""
    template = rng.choice(NAME_TEMPLATES)
    text, spans = "", []
    for piece in re.split(r"(\{P\}|\{L\})", template):
        if piece == "{P}":
            name = rng.choice(FIRST_NAMES)
            if rng.random() < 0.7:
                name += " " + rng.choice(LAST_NAMES)
            spans.append([len(text), len(text) + len(name), "PER"])
            text += name
        elif piece == "{L}":
            city = rng.choice(CITIES)
            spans.append([len(text), len(text) + len(city), "LOC"])
            text += city
        else:
            text += piece
    return text, spans


def corpus() -> tuple[list[dict], list[dict]]:
    """(reviews, name sentences), each deduplicated, in generation order."""
    rng = random.Random(SEED)
    reviews, seen = [], set()
    for topic in TOPICS:
        for sentiment in SENTIMENTS:
            made = 0
            while made < REVIEWS_PER_CLASS:
                text = review(rng, topic, sentiment)
                if text not in seen:
                    seen.add(text)
                    reviews.append({"text": text, "topic": topic, "sentiment": sentiment})
                    made += 1
    rng.shuffle(reviews)
    names = []
    while len(names) < NAME_SENTENCES:
        text, spans = name_sentence(rng)
        if text not in seen:
            seen.add(text)
            names.append({"text": text, "entities": spans})
    return reviews, names


def write_corpus(reviews: list[dict], names: list[dict]) -> Path:
    CORPUS_FILE.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in reviews + names]
    CORPUS_FILE.write_text("\n".join(lines) + "\n")
    return CORPUS_FILE


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


def wordpiece_vocab(tok: Tokenizer, texts: list[str]) -> dict[str, int]:
    """The vocabulary tokenizers' WordPieceTrainer learns, computed deterministically.

    WordPieceTrainer (tokenizers 0.23) is BpeTrainer with the "##" continuing-subword prefix,
    and it is not deterministic (huggingface/tokenizers#1794): it numbers the "##c" tokens in
    hash-map order, and ties between equally frequent pairs are broken by those numbers, so two
    runs on the same corpus learn different vocabularies. This is the same algorithm with every
    order fixed (the fix proposed in huggingface/tokenizers#2066): words split by the tokenizer's
    own normalizer and pre-tokenizer; ids: the special tokens, the alphabet sorted by code point,
    then its "##" forms sorted likewise; then merge the most frequent adjacent pair (ties: the
    lowest pair of ids, BpeTrainer's rule), left to right in every word, the merged token being
    the first part + the second without "##", until the vocabulary has VOCAB_SIZE entries or
    nothing is left to merge."""
    counts: dict[str, int] = {}
    for text in texts:
        for word, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(text)):
            counts[word] = counts.get(word, 0) + 1
    vocab: dict[str, int] = {}

    def add(token: str) -> int:
        return vocab.setdefault(token, len(vocab))

    for token in SPECIAL_TOKENS:
        add(token)
    for c in sorted({c for w in counts for c in w}):
        add(c)
    for c in sorted({c for w in counts for c in w[1:]}):
        add(PREFIX + c)
    words = [
        ([vocab[w[0]]] + [vocab[PREFIX + c] for c in w[1:]], n) for w, n in sorted(counts.items())
    ]
    names = list(vocab)
    while len(vocab) < VOCAB_SIZE:
        pairs: dict[tuple[int, int], int] = {}
        for symbols, n in words:
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] = pairs.get(pair, 0) + n
        if not pairs:
            break
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))
        merged = add(names[a] + names[b][len(PREFIX) :])
        if merged == len(names):
            names.append(names[a] + names[b][len(PREFIX) :])
        for symbols, _ in words:
            i = 0
            while i < len(symbols) - 1:
                if symbols[i] == a and symbols[i + 1] == b:
                    symbols[i : i + 2] = [merged]
                i += 1
    assert list(vocab.values()) == list(range(len(vocab)))
    return vocab


def train_tokenizer(texts: list[str]) -> Tokenizer:
    """BERT WordPiece tokenizer (see wordpiece_vocab for how its vocabulary is learnt)."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    vocab = wordpiece_vocab(tok, texts)
    model = models.WordPiece(
        vocab, unk_token="[UNK]", continuing_subword_prefix=PREFIX, max_input_chars_per_word=100
    )
    tok.model = model
    # What WordPieceTrainer does with its special tokens: added tokens, flagged special.
    tok.add_special_tokens(SPECIAL_TOKENS)
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    assert list(ids.values()) == list(range(len(SPECIAL_TOKENS))), ids
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    doc = json.loads(tok.to_str())
    assert doc["truncation"] is None and doc["padding"] is None
    return tok


def hf_tokenizer(path: Path) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_file=str(path),
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=MAX_LENGTH,
        model_input_names=TEXT_INPUTS,
    )


def encode(tok: Tokenizer, texts: list[str], pairs: list[str] | None = None) -> dict:
    """Padded (longest) and truncated (MAX_LENGTH) numpy inputs of the training loops."""
    tok = Tokenizer.from_str(tok.to_str())
    tok.enable_truncation(MAX_LENGTH)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    encs = tok.encode_batch(texts if pairs is None else list(zip(texts, pairs)))
    return {
        "input_ids": np.array([e.ids for e in encs], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64),
        "encodings": encs,
    }


def tokenize(hf: PreTrainedTokenizerFast, raw: Tokenizer, data) -> dict:
    """What a request's `data` becomes: transformers' tokenizer with truncation=True,
    max_length=64, padding="longest"; checked against the tokenizers library with the same
    settings (what the engine does with tokenizer.json)."""
    if isinstance(data, str):
        texts, pairs = [data], None
    elif isinstance(data, dict):
        texts, pairs = [data["text"]], [data["text_pair"]]
    elif all(isinstance(d, str) for d in data):
        texts, pairs = list(data), None
    else:
        texts, pairs = [d[0] for d in data], [d[1] for d in data]
    kw = dict(truncation=True, max_length=MAX_LENGTH, return_token_type_ids=True,
              return_special_tokens_mask=True, return_offsets_mapping=True)
    enc = hf(texts, pairs, padding="longest", **kw) if pairs else hf(texts, padding="longest", **kw)
    feeds = {n: np.array(enc[n], dtype=np.int64) for n in TEXT_INPUTS}
    alone = [hf(t, p, **kw) if pairs else hf(t, **kw)
             for t, p in zip(texts, pairs or [None] * len(texts))]
    ref = encode(raw, texts, pairs)
    for n in TEXT_INPUTS:
        assert np.array_equal(feeds[n], ref[n]), f"{n}: transformers and tokenizers differ"
    for row, a in enumerate(alone):
        n = len(a["input_ids"])
        assert feeds["input_ids"][row, :n].tolist() == a["input_ids"]
        assert feeds["attention_mask"][row].sum() == n
    return {
        "texts": texts,
        "feeds": feeds,
        "alone": [{k: np.array([a[k]], dtype=np.int64) for k in TEXT_INPUTS} for a in alone],
        "special": np.array(enc["special_tokens_mask"]),
        "offsets": enc["offset_mapping"],
    }


def token_json(tokenized: dict) -> dict:
    feeds = tokenized["feeds"]
    return {
        **{n: feeds[n].tolist() for n in TEXT_INPUTS},
        "input_ids_unpadded": [a["input_ids"][0].tolist() for a in tokenized["alone"]],
    }


# --------------------------------------------------------------------------------------------
# Export, manifests, files
# --------------------------------------------------------------------------------------------


class BertOutput(nn.Module):
    """A transformers BERT called with the three tensors, returning one output (by name)."""

    def __init__(self, model: nn.Module, output: str):
        super().__init__()
        self.model = model
        self.output = output

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        )
        return out[self.output]


def export(model: nn.Module, output: str, vocab: int) -> onnx.ModelProto:
    """gen_torch_models.export for a BERT with the three token inputs and output `output`:
    dynamo, dynamic batch and sequence axes, every tensor inline, node metadata dropped."""
    model.eval()
    ids = torch.randint(1, vocab, (2, 16), generator=torch.Generator().manual_seed(SEED))
    args = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            model,
            args,
            str(path),
            dynamo=True,
            external_data=False,
            input_names=TEXT_INPUTS,
            output_names=[output],
            dynamic_shapes=tuple({0: BATCH, 1: SEQUENCE} for _ in TEXT_INPUTS),
        )
        written = sorted(p.name for p in Path(tmp).iterdir())
        onx = onnx.load(str(path))
    onnx.external_data_helper.convert_model_from_external_data(onx)
    if written != ["model.onnx"]:
        print(f"  the exporter wrote {written}; re-saved with every tensor inline")
    for node in onx.graph.node:
        del node.metadata_props[:]
    return onx


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return fx.toml_str(v)
    return "[" + ", ".join(toml_value(x) for x in v) + "]"


def manifest(onx: onnx.ModelProto, description: str, tables: list[tuple[str, dict]]) -> str:
    """fx.manifest's header, [[inputs]] and [[outputs]], then `tables` in order (instead of
    fx.manifest's `[postprocess] kind = "raw"`)."""
    text = fx.manifest(onx, description)
    raw = '\n[postprocess]\nkind = "raw"\n'
    assert text.endswith(raw), text
    text = text[: -len(raw)]
    for name, values in tables:
        text += f"\n[{name}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items())
    doc = tomllib.loads(text)
    for name, values in tables:
        table = doc
        for part in name.split("."):
            table = table[part]
        assert table == values, (name, table, values)
    return text


def text_manifest(onx: onnx.ModelProto, description: str, postprocess: dict) -> str:
    return manifest(
        onx,
        description,
        [
            ("preprocess", {"tokenizer": "tokenizer.json", "max_length": MAX_LENGTH}),
            ("postprocess", postprocess),
            ("batching", BATCHING),
        ],
    )


def write_text_model(
    folder: Path, onx: onnx.ModelProto, toml_text: str, tokenizer_json: str
) -> list[Path]:
    """fx.write_model plus tokenizer.json (fx.write_model allows only its two files)."""
    for t in list(onx.graph.initializer):
        assert t.data_location != fx.TP.EXTERNAL, f"{t.name} is external data"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    path.write_bytes(onx.SerializeToString())
    (folder / "model.toml").write_text(toml_text)
    (folder / "tokenizer.json").write_text(tokenizer_json)
    written = {"model.onnx", "model.toml", "tokenizer.json"}
    extra = sorted({p.name for p in folder.iterdir()} - written)
    assert not extra, f"{folder}: unexpected files {extra}"
    fx.check_file(path)
    assert path.stat().st_size < TEXT_MAX_BYTES, f"{path}: {path.stat().st_size} bytes"
    return [path, folder / "model.toml", folder / "tokenizer.json"]


def write_json(name: str, doc: dict) -> Path:
    EXPECTED.mkdir(parents=True, exist_ok=True)
    dest = EXPECTED / f"{name}.json"
    dest.write_text(json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n")
    return dest


def tidy(onx: onnx.ModelProto) -> onnx.ModelProto:
    """gen_models.tidy: drop duplicate / unused opset imports."""
    used = {n.domain for n in onx.graph.node}
    seen: dict[str, int] = {}
    for imp in onx.opset_import:
        if imp.domain == "" or imp.domain in used:
            seen[imp.domain] = max(seen.get(imp.domain, 0), imp.version)
    del onx.opset_import[:]
    for domain in sorted(seen):
        onx.opset_import.append(onnx.helper.make_opsetid(domain, seen[domain]))
    return onx


def r6(x) -> float:
    return round(float(x), DECIMALS)


def softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def classification(probs: np.ndarray, labels: list[str]) -> dict:
    best = int(np.argmax(probs))
    return {
        "label": labels[best],
        "score": r6(probs[best]),
        "scores": {label: r6(p) for label, p in zip(labels, probs)},
    }


def one_or_list(data, results: list):
    """A single text (or one pair object) answers one result, a list a list."""
    if isinstance(data, (str, dict)):
        assert len(results) == 1
        return results[0]
    return results


def compare(name: str, model: nn.Module, path: Path, cases: list[dict[str, np.ndarray]]) -> None:
    """onnxruntime on the written file against PyTorch eager, case by case."""
    sess = fx.session(path)
    worst = 0.0
    for feeds in cases:
        with torch.no_grad():
            ref = model(*[torch.from_numpy(feeds[n]) for n in TEXT_INPUTS]).numpy()
        (got,) = sess.run(None, feeds)
        diff = float(np.max(np.abs(got - ref)))
        assert diff < TOLERANCE, f"{name}: onnxruntime differs from torch by {diff}"
        worst = max(worst, diff)
    print(f"  {name}: max |onnxruntime - torch| over {len(cases)} case(s) = {worst:.3e}")


def random_cases(vocab: int) -> list[dict[str, np.ndarray]]:
    """Random ids (1, 8) and (20, 64) with trailing padding in every other row."""
    rng = np.random.default_rng(SEED)
    cases = []
    for batch, seq in ((1, 8), (20, MAX_LENGTH)):
        ids = rng.integers(5, vocab, (batch, seq), dtype=np.int64)
        mask = np.ones_like(ids)
        for row in range(1, batch, 2):
            mask[row, seq - int(rng.integers(1, seq // 2)) :] = 0
        ids[mask == 0] = 0
        types = np.zeros_like(ids)
        types[:, seq // 2 :] = 1
        cases.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": types * mask})
    return cases


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def config(vocab: int, labels: list[str]) -> BertConfig:
    return BertConfig(
        vocab_size=vocab,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=256,
        max_position_embeddings=128,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        pad_token_id=0,
    )


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1)


def train(
    model: nn.Module,
    data: dict,
    targets: np.ndarray,
    epochs: int,
    lr: float,
    aux: tuple[nn.Module, np.ndarray] | None = None,
    aux_weight: float = 1.0,
) -> None:
    """AdamW on mini-batches of 32 (fixed order per seed); `targets` per row (sequence
    classification) or per token (-100: ignored). With `aux` = (head, row targets), the loss
    also has the cross-entropy of head(L2-normalised masked mean of the last hidden state):
    the auxiliary topic task that makes the encoder's mean-pooled embedding carry the topic."""
    gen = torch.Generator().manual_seed(SEED)
    params = list(model.parameters()) + (list(aux[0].parameters()) if aux else [])
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    tensors = {n: torch.from_numpy(data[n]) for n in TEXT_INPUTS}
    y = torch.from_numpy(targets).long()
    aux_y = torch.from_numpy(aux[1]).long() if aux else None
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 32):
            idx = order[i : i + 32]
            width = int(tensors["attention_mask"][idx].sum(1).max())  # trim the batch's padding
            batch = {n: t[idx, :width] for n, t in tensors.items()}
            labels = y[idx, :width] if y.dim() == 2 else y[idx]
            opt.zero_grad()
            out = model(**batch, labels=labels, output_hidden_states=aux is not None)
            loss = out.loss
            if aux:
                pooled = masked_mean(out.hidden_states[-1], batch["attention_mask"])
                logits = aux[0](nn.functional.normalize(pooled, dim=-1))
                loss = loss + aux_weight * nn.functional.cross_entropy(logits, aux_y[idx])
            loss.backward()
            opt.step()
    model.eval()


def predict(model: nn.Module, data: dict) -> np.ndarray:
    with torch.no_grad():
        return model(**{n: torch.from_numpy(data[n]) for n in TEXT_INPUTS}).logits.numpy()


def token_tags(encodings, spans: list[list]) -> np.ndarray:
    """Per token: B-X for the token starting an entity span, I-X inside it, O elsewhere,
    -100 for special tokens and padding."""
    rows = []
    for enc, ents in zip(encodings, spans):
        row = []
        for (s, e), special in zip(enc.offsets, enc.special_tokens_mask):
            if special:
                row.append(-100)
                continue
            tag = "O"
            for start, end, kind in ents:
                if start <= s and e <= end:
                    tag = ("B-" if s == start else "I-") + kind
            row.append(TAGS.index(tag))
        rows.append(row)
    return np.array(rows, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def text_classifier(
    tok: Tokenizer, tok_json: str, reviews: list[dict]
) -> tuple[list[Path], nn.Module]:
    vocab = tok.get_vocab_size()
    texts = [r["text"] for r in reviews]
    y = np.array([SENTIMENTS.index(r["sentiment"]) for r in reviews])
    topics = np.array([TOPICS.index(r["topic"]) for r in reviews])
    strata = [r["topic"] + r["sentiment"] for r in reviews]
    train_idx, test_idx = train_test_split(
        np.arange(len(texts)), test_size=0.2, random_state=SEED, stratify=strata
    )
    data = encode(tok, texts)
    split = lambda idx: {n: data[n][idx] for n in TEXT_INPUTS}  # noqa: E731
    torch.manual_seed(SEED)
    model = BertForSequenceClassification(config(vocab, SENTIMENTS))
    topic_head = nn.Linear(64, len(TOPICS))  # training only: not exported
    started = time.perf_counter()
    train(model, split(train_idx), y[train_idx], epochs=8, lr=1e-3,
          aux=(topic_head, topics[train_idx]), aux_weight=0.1)
    acc_train = np.mean(predict(model, split(train_idx)).argmax(1) == y[train_idx])
    acc_test = np.mean(predict(model, split(test_idx)).argmax(1) == y[test_idx])
    print(
        f"text_classifier/v1: trained in {time.perf_counter() - started:.1f} s; sentiment "
        f"accuracy train {acc_train:.4f} ({len(train_idx)}), held-out {acc_test:.4f} "
        f"({len(test_idx)})"
    )
    assert acc_test > 0.9, acc_test

    wrapped = BertOutput(model, "logits").eval()
    onx = export(wrapped, "logits", vocab)
    onx.graph.name = "text_classifier_v1"
    fx.expect_io(onx, [(n, "INT64", [-1, -1]) for n in TEXT_INPUTS], [("logits", "FP32", [-1, 2])])
    toml_text = text_manifest(
        onx,
        "Sentiment of a short review (negative / positive): tiny BERT (hidden 64, 2 layers, "
        f"2 heads, vocabulary {vocab}) trained on a synthetic template corpus, with its own "
        "WordPiece tokenizer; a demo, not a real sentiment model",
        {"kind": "classification", "softmax": True, "tensor": "logits", "labels": SENTIMENTS},
    )
    files = write_text_model(MODELS / "text_classifier" / "v1", onx, toml_text, tok_json)
    print(f"text_classifier/v1: {fx.describe(onx)}")
    print("\n".join(fx.io_summary(onx)))
    return files, model


def text_classifier_expected(path: Path, model: nn.Module, hf, raw) -> Path:
    long_text = (
        "The match was wonderful, the crowd cheered all night and we won easily. "
        "The pizza was delicious, the portions were generous and the service was friendly. "
        "The laptop works fast, the battery lasts all week and the design is sleek. "
        "Honestly, the weather was lovely: the sun was warm and the sky stayed clear all day "
        "long, so we had a picnic outside with everyone we know. The goalkeeper was brilliant, "
        "the fans sang together and the comeback was unforgettable."
    )
    cases = [
        ("single", "The pizza was delicious and the service was friendly!"),
        (
            "list",
            [
                "Awful.",
                "The laptop keeps crashing and support never answered.",
                "What a wonderful experience, the crowd cheered all night and we won easily!",
                "The forecast was terrible, it rained all day.",
            ],
        ),
        (
            "pair",
            {"text": "The battery died in an hour.", "text_pair": "I would never recommend it."},
        ),
        (
            "pairs",
            [
                ["The soup was lovely.", "It tasted delicious."],
                [
                    "The storm was dreadful.",
                    "The roads were flooded and the flights were cancelled.",
                ],
                [long_text, "Great."],
            ],
        ),
        ("long", long_text),
        ("long_list", [long_text, "The game was boring."]),
        (
            "unknown_words",
            [
                "Zebras juggled xylophones in Reykjavík!",
                "Café Crème: TERRIBLE service... NOT worth €20 😡",
                "WOW!!! The PIZZA was GREAT 👍🍕",
            ],
        ),
    ]
    sess = fx.session(path)
    out, torch_feeds = [], []
    for name, data in cases:
        t = tokenize(hf, raw, data)
        (logits,) = sess.run(None, t["feeds"])
        probs = softmax(logits)
        for row, alone in enumerate(t["alone"]):
            (single,) = sess.run(None, alone)
            diff = np.max(np.abs(softmax(single)[0] - probs[row]))
            assert diff < TOLERANCE, f"text_classifier {name}: alone vs batch {diff}"
        out.append(
            {"name": name, "data": data, **token_json(t),
             "result": one_or_list(data, [classification(p, SENTIMENTS) for p in probs])}
        )
        torch_feeds.append(t["feeds"])
        shown = [classification(p, SENTIMENTS) for p in probs]
        print(f"  text_classifier {name}: " + ", ".join(
            f"{r['label']} {r['score']:.3f}" for r in shown
        ))
    long_ids = out[[c["name"] for c in out].index("long")]["input_ids_unpadded"][0]
    assert len(long_ids) == MAX_LENGTH and len(raw.encode(long_text).ids) > MAX_LENGTH + 30
    compare("text_classifier", BertOutput(model, "logits").eval(), path,
            torch_feeds + random_cases(raw.get_vocab_size()))
    doc = {"model": "text_classifier", "version": "v1", "max_length": MAX_LENGTH, "cases": out}
    return write_json("text_classifier-v1", doc)


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over the tokens where mask = 1, then L2-normalised (float64)."""
    m = mask[..., None].astype(np.float64)
    pooled = (hidden.astype(np.float64) * m).sum(1) / m.sum(1)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def sentence_embedder(
    tok: Tokenizer, tok_json: str, classifier: nn.Module
) -> tuple[list[Path], nn.Module]:
    vocab = tok.get_vocab_size()
    model = BertModel(config(vocab, SENTIMENTS), add_pooling_layer=False).eval()
    state = {k: v for k, v in classifier.bert.state_dict().items() if not k.startswith("pooler.")}
    model.load_state_dict(state, strict=True)
    wrapped = BertOutput(model, "last_hidden_state").eval()
    onx = export(wrapped, "last_hidden_state", vocab)
    onx.graph.name = "sentence_embedder_v1"
    fx.expect_io(
        onx,
        [(n, "INT64", [-1, -1]) for n in TEXT_INPUTS],
        [("last_hidden_state", "FP32", [-1, -1, 64])],
    )
    toml_text = text_manifest(
        onx,
        "Sentence embedding (64 dimensions: the attention-masked mean of last_hidden_state, "
        "L2-normalised) from text_classifier's tiny BERT encoder; a demo, not a real embedder",
        {"kind": "embedding", "pooling": "mean", "normalize": True, "tensor": "last_hidden_state"},
    )
    files = write_text_model(MODELS / "sentence_embedder" / "v1", onx, toml_text, tok_json)
    print(f"sentence_embedder/v1: {fx.describe(onx)}")
    print("\n".join(fx.io_summary(onx)))
    return files, wrapped


def embed(sess, feeds: dict[str, np.ndarray]) -> np.ndarray:
    (hidden,) = sess.run(None, feeds)
    return mean_pool(hidden, feeds["attention_mask"])


def sentence_embedder_expected(path: Path, wrapped: nn.Module, hf, raw) -> Path:
    cases = [
        ("single", "The weather was lovely and the sun was warm."),
        (
            "list",
            [
                "Great coffee.",
                "The new update deleted my files and the laptop keeps crashing.",
                "We lost again, the players looked tired.",
            ],
        ),
    ]
    sess = fx.session(path)
    out, torch_feeds = [], []
    for name, data in cases:
        t = tokenize(hf, raw, data)
        emb = embed(sess, t["feeds"])
        for row, alone in enumerate(t["alone"]):
            diff = np.max(np.abs(embed(sess, alone)[0] - emb[row]))
            assert diff < TOLERANCE, f"sentence_embedder {name}: alone vs batch {diff}"
        results = [{"embedding": [r6(v) for v in e]} for e in emb]
        result = one_or_list(data, results)
        out.append({"name": name, "data": data, **token_json(t), "result": result})
        torch_feeds.append(t["feeds"])
    compare("sentence_embedder", wrapped, path, torch_feeds + random_cases(raw.get_vocab_size()))
    doc = {"model": "sentence_embedder", "version": "v1", "max_length": MAX_LENGTH, "cases": out}
    return write_json("sentence_embedder-v1", doc)


def topic_classifier(
    embedder: Path, tok: Tokenizer, reviews: list[dict]
) -> tuple[list[Path], Path]:
    texts = [r["text"] for r in reviews]
    y = np.array([TOPICS.index(r["topic"]) for r in reviews])
    sess = fx.session(embedder)
    data = encode(tok, texts)
    x = embed(sess, {n: data[n] for n in TEXT_INPUTS}).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=SEED, stratify=y
    )
    clf = LogisticRegression(C=10.0, max_iter=2000).fit(x_train, y_train)
    print(
        f"topic_classifier/v1: topic accuracy train {clf.score(x_train, y_train):.4f} "
        f"({len(y_train)}), held-out {clf.score(x_test, y_test):.4f} ({len(y_test)})"
    )
    assert list(clf.classes_) == list(range(len(TOPICS)))
    onx = convert_sklearn(
        clf,
        initial_types=[("embedding", FloatTensorType([None, x.shape[1]]))],
        options={id(clf): {"zipmap": False}},
        target_opset=ORT_TARGET_OPSET,
    )
    onx = tidy(onx)
    onx.graph.name = "topic_classifier_v1"  # skl2onnx names the graph with a random UUID
    fx.expect_io(
        onx,
        [("embedding", "FP32", [-1, x.shape[1]])],
        [("label", "INT64", [-1]), ("probabilities", "FP32", [-1, len(TOPICS)])],
    )
    toml_text = manifest(
        onx,
        "Topic of a sentence (sports / weather / food / tech) from sentence_embedder's "
        "embedding: logistic regression (scikit-learn, skl2onnx without ZipMap)",
        [("postprocess", {"kind": "classification", "softmax": False, "tensor": "probabilities",
                          "labels": TOPICS})],
    )
    files = fx.write_model(MODELS / "topic_classifier" / "v1", onx, toml_text)
    print(f"topic_classifier/v1: {fx.describe(onx)}")
    print("\n".join(fx.io_summary(onx)))
    got = dict(fx.ort_run(files[0], {"embedding": x}))
    diff = float(np.max(np.abs(got["probabilities"] - clf.predict_proba(x))))
    agree = float(np.mean(got["label"] == clf.predict(x)))
    print(f"  max |onnxruntime - sklearn predict_proba| = {diff:.3e}; label agreement {agree:.4f}")
    assert diff < TOLERANCE and agree == 1.0
    return files, files[0]


def text_topic(embedder: Path, topic: Path, hf, raw) -> list[Path]:
    folder = MODELS / "text_topic" / "v1"
    folder.mkdir(parents=True, exist_ok=True)
    text = (
        'backend = "pipeline"\n'
        "description = \"Sentence \u2192 topic: sentence_embedder's embedding fed to "
        'topic_classifier"\n'
        "\n[[steps]]\nmodel = \"sentence_embedder:v1\"\n"
        "\n[[steps]]\nmodel = \"topic_classifier:v1\"\n"
    )
    doc = tomllib.loads(text)
    assert [s["model"] for s in doc["steps"]] == ["sentence_embedder:v1", "topic_classifier:v1"]
    (folder / "model.toml").write_text(text)
    assert sorted(p.name for p in folder.iterdir()) == ["model.toml"]

    cases = [
        ("single", "The pasta was delicious and the chef was friendly."),
        (
            "list",
            [
                "The storm broke our fence.",
                "My new phone has a sharp display and the battery lasts all week.",
                "The goalkeeper was brilliant and we won the final.",
                "Breakfast was cold.",
            ],
        ),
    ]
    emb_sess, topic_sess = fx.session(embedder), fx.session(topic)
    out = []
    for name, data in cases:
        t = tokenize(hf, raw, data)
        emb = embed(emb_sess, t["feeds"]).astype(np.float32)
        _, probs = topic_sess.run(["label", "probabilities"], {"embedding": emb})
        results = [classification(p, TOPICS) for p in probs]
        shown = ", ".join(f"{r['label']} {r['score']:.3f}" for r in results)
        print(f"  text_topic {name}: {shown}")
        out.append({"name": name, "data": data, "result": one_or_list(data, results)})
    doc = {"model": "text_topic", "version": "v1", "max_length": MAX_LENGTH, "cases": out}
    return [folder / "model.toml", write_json("text_topic-v1", doc)]


def token_tagger(
    tok: Tokenizer, tok_json: str, reviews: list[dict], names: list[dict]
) -> tuple[list[Path], nn.Module]:
    vocab = tok.get_vocab_size()
    # the name sentences, and a third as many reviews (no names in them)
    rows = names + [{"text": r["text"], "entities": []} for r in reviews[: len(names) // 3]]
    data = encode(tok, [r["text"] for r in rows])
    tags = token_tags(data["encodings"], [r["entities"] for r in rows])
    train_idx, test_idx = train_test_split(np.arange(len(rows)), test_size=0.2, random_state=SEED)
    split = lambda idx: {n: data[n][idx] for n in TEXT_INPUTS}  # noqa: E731
    torch.manual_seed(SEED)
    model = BertForTokenClassification(config(vocab, TAGS))
    started = time.perf_counter()
    train(model, split(train_idx), tags[train_idx], epochs=8, lr=1e-3)

    def accuracy(idx):
        pred = predict(model, split(idx)).argmax(-1)
        keep = tags[idx] != -100
        return np.mean(pred[keep] == tags[idx][keep]), np.mean(
            [np.array_equal(p[k], t[k]) for p, t, k in zip(pred, tags[idx], keep)]
        )

    (tok_train, sent_train), (tok_test, sent_test) = accuracy(train_idx), accuracy(test_idx)
    print(
        f"token_tagger/v1: trained in {time.perf_counter() - started:.1f} s; token accuracy "
        f"train {tok_train:.4f}, held-out {tok_test:.4f}; sentences all right train "
        f"{sent_train:.4f} ({len(train_idx)}), held-out {sent_test:.4f} ({len(test_idx)})"
    )
    assert tok_test > 0.95, tok_test

    wrapped = BertOutput(model, "logits").eval()
    onx = export(wrapped, "logits", vocab)
    onx.graph.name = "token_tagger_v1"
    fx.expect_io(
        onx,
        [(n, "INT64", [-1, -1]) for n in TEXT_INPUTS],
        [("logits", "FP32", [-1, -1, len(TAGS)])],
    )
    toml_text = text_manifest(
        onx,
        "Test fixture: person and city names (O, B-PER, I-PER, B-LOC, I-LOC) per token, tiny BERT "
        f"(hidden 64, 2 layers, 2 heads, vocabulary {vocab}) trained on synthetic template "
        "sentences",
        {"kind": "token_classification", "tensor": "logits", "labels": TAGS},
    )
    files = write_text_model(TEST_MODELS / "token_tagger" / "v1", onx, toml_text, tok_json)
    print(f"token_tagger/v1: {fx.describe(onx)}")
    print("\n".join(fx.io_summary(onx)))
    return files, model


def group_entities(text: str, tokens: list[dict]) -> list[dict]:
    """transformers' token-classification grouping with aggregation_strategy="simple": B-X
    starts a group, I-X continues a group of tag X (anything else starts a new one), a label
    without a B-/I- prefix ("O") is a tag of its own; "O" groups are dropped."""

    def tag(label):
        return (label[0], label[2:]) if label[:2] in ("B-", "I-") else ("I", label)

    groups: list[list[dict]] = []
    for t in tokens:
        bi, kind = tag(t["label"])
        if groups and tag(groups[-1][-1]["label"])[1] == kind and bi != "B":
            groups[-1].append(t)
        else:
            groups.append([t])
    entities = []
    for g in groups:
        kind = g[0]["label"].split("-", 1)[-1]
        if kind == "O":
            continue
        start, end = g[0]["start"], g[-1]["end"]
        score = float(np.mean([t["raw_score"] for t in g]))
        entities.append({
            "entity": kind, "score": r6(score), "start": start, "end": end,
            "text": text[start:end],
        })
    return entities


def token_tagger_expected(path: Path, model: nn.Module, hf, raw) -> Path:
    cases = [
        ("single", "Alice Johnson flew from Paris to New York last week."),
        (
            "list",
            [
                "Yesterday Kofi met Maria Rossi in Rio de Janeiro.",
                "The pizza was delicious.",
                "Zoë Novak moved to Tokyo, said Hiro Tanaka.",
                "Did Priya Patel enjoy the trip to Cape Town?",
            ],
        ),
    ]
    sess = fx.session(path)
    pipe = transformers.pipeline(
        "token-classification", model=model, tokenizer=hf, aggregation_strategy="simple",
        device="cpu",
    )
    tokens_pipe = transformers.pipeline(
        "token-classification", model=model, tokenizer=hf, aggregation_strategy="none",
        device="cpu",
    )
    out, torch_feeds = [], []
    for name, data in cases:
        t = tokenize(hf, raw, data)
        (logits,) = sess.run(None, t["feeds"])
        probs = softmax(logits)
        results = []
        for row, text in enumerate(t["texts"]):
            (alone,) = sess.run(None, t["alone"][row])
            n = alone.shape[1]
            diff = np.max(np.abs(softmax(alone)[0] - probs[row, :n]))
            assert diff < TOLERANCE, f"token_tagger {name}: alone vs batch {diff}"
            tokens = []
            for i in range(n):
                if t["special"][row][i]:
                    continue
                best = int(np.argmax(probs[row, i]))
                start, end = t["offsets"][row][i]
                tokens.append({
                    "token": hf.convert_ids_to_tokens(int(t["feeds"]["input_ids"][row, i])),
                    "label": TAGS[best],
                    "raw_score": float(probs[row, i, best]),
                    "start": int(start),
                    "end": int(end),
                })
            entities = group_entities(text, tokens)
            # the same as transformers' pipeline (PyTorch eager, one text at a time)
            ref = pipe(text)
            assert [(e["entity_group"], e["start"], e["end"]) for e in ref] == [
                (e["entity"], e["start"], e["end"]) for e in entities
            ], (text, ref, entities)
            for e, r in zip(entities, ref):
                assert abs(e["score"] - float(r["score"])) < TOLERANCE, (e, r)
            ref_tokens = [x for x in tokens_pipe(text)]
            assert [x["entity"] for x in ref_tokens] == [
                x["label"] for x in tokens if x["label"] != "O"
            ], (text, ref_tokens)
            for tk in tokens:
                tk["score"] = r6(tk.pop("raw_score"))
                tk["start"], tk["end"] = tk.pop("start"), tk.pop("end")
            results.append({"tokens": tokens, "entities": entities})
            print(f"  token_tagger: {text!r}: " + ", ".join(
                f"{e['entity']} {e['text']!r} {e['score']:.3f}" for e in entities
            ))
        result = one_or_list(data, results)
        out.append({"name": name, "data": data, **token_json(t), "result": result})
        torch_feeds.append(t["feeds"])
    compare("token_tagger", BertOutput(model, "logits").eval(), path,
            torch_feeds + random_cases(raw.get_vocab_size()))
    doc = {"model": "token_tagger", "version": "v1", "max_length": MAX_LENGTH, "cases": out}
    return write_json("token_tagger-v1", doc)


def digits_cnn_v2() -> list[Path]:
    source = MODELS / "digits_cnn" / "v1" / "model.onnx"
    onx = onnx.load(str(source))
    fx.expect_io(onx, [("image", "FP32", [-1, 1, 8, 8])], [("logits", "FP32", [-1, 10])])
    labels = [str(d) for d in range(10)]
    toml_text = manifest(
        onx,
        "Handwritten digit from an 8x8 grayscale image (sklearn 8x8 digits): digits_cnn v1's "
        "convnet with image preprocessing (pixels / 255) and classification postprocess",
        [
            ("preprocess.image", {"width": 8, "height": 8, "resize": "exact",
                                  "channels": "grayscale", "layout": "NCHW", "mean": [0.0],
                                  "std": [1.0]}),
            ("postprocess", {"kind": "classification", "softmax": True, "tensor": "logits",
                             "labels": labels}),
            ("batching", BATCHING),
        ],
    )
    folder = MODELS / "digits_cnn" / "v2"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(source.read_bytes())
    (folder / "model.toml").write_text(toml_text)
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "model.toml"]
    fx.check_file(folder / "model.onnx")

    # the test split of gen_torch_models.digits_cnn
    x, y = load_digits(return_X_y=True)
    _, x_test, _, y_test = train_test_split(x, y, test_size=0.2, random_state=SEED, stratify=y)
    sess = fx.session(source)
    (logits,) = sess.run(None, {"image": (x_test / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)})
    pred = logits.argmax(1)
    wrong = np.flatnonzero(pred != y_test)
    print(f"digits_cnn/v2: v1 gets {len(wrong)} of {len(y_test)} test images wrong")
    picks = [int(np.flatnonzero((y_test == d) & (pred == y_test))[0]) for d in range(10)]
    if len(wrong):
        picks.append(int(wrong[0]))
    DIGIT_IMAGES.mkdir(parents=True, exist_ok=True)
    files, cases = [], []
    for i, idx in enumerate(picks):
        pixels = np.round(x_test[idx].reshape(8, 8) * 255.0 / 16.0).astype(np.uint8)
        png = DIGIT_IMAGES / f"digit-{i}.png"
        Image.fromarray(pixels).save(png, format="PNG")
        with Image.open(png) as im:
            assert im.mode == "L" and im.size == (8, 8), (im.mode, im.size)
            decoded = np.asarray(im, dtype=np.float32) / 255.0
        assert np.array_equal(np.asarray(Image.open(png)), pixels)
        (out,) = sess.run(None, {"image": decoded.reshape(1, 1, 8, 8)})
        probs = softmax(out)[0]
        result = classification(probs, labels)
        cases.append({"file": png.name, "target": int(y_test[idx]), "label": result["label"],
                      "scores": result["scores"]})
        files.append(png)
    print("  " + ", ".join(f"{c['file']}: {c['target']} -> {c['label']}" for c in cases))
    expected = write_json("digits_cnn-v2", {"model": "digits_cnn", "version": "v2", "cases": cases})
    return [folder / "model.onnx", folder / "model.toml"] + files + [expected]


def main() -> int:
    started = time.perf_counter()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, onnx "
        f"{onnx.__version__}, onnxruntime {fx.ort.__version__}"
    )
    reviews, names = corpus()
    files = [write_corpus(reviews, names)]
    tok = train_tokenizer([r["text"] for r in reviews] + [n["text"] for n in names])
    tok_json = tok.to_str(pretty=True) + "\n"
    print(
        f"corpus: {len(reviews)} reviews, {len(names)} name sentences; tokenizer vocabulary "
        f"{tok.get_vocab_size()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tok_path = Path(tmp) / "tokenizer.json"
        tok_path.write_text(tok_json)
        hf = hf_tokenizer(tok_path)
        raw = Tokenizer.from_file(str(tok_path))

        clf_files, classifier = text_classifier(tok, tok_json, reviews)
        files += clf_files
        files.append(text_classifier_expected(clf_files[0], classifier, hf, raw))

        emb_files, embedder = sentence_embedder(tok, tok_json, classifier)
        files += emb_files
        files.append(sentence_embedder_expected(emb_files[0], embedder, hf, raw))

        topic_files, topic_path = topic_classifier(emb_files[0], tok, reviews)
        files += topic_files
        files += text_topic(emb_files[0], topic_path, hf, raw)

        tag_files, tagger = token_tagger(tok, tok_json, reviews, names)
        files += tag_files
        files.append(token_tagger_expected(tag_files[0], tagger, hf, raw))

    files += digits_cnn_v2()
    fx.report(files)
    print(f"\n{time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
