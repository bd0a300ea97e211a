"""The two tag sentences ("system prompts") of the paper, and where they go in a chat.

Seed examples are trained with S_A, augmented ones with S_W; at inference the paper's best
result used both sentences together.
"""

from __future__ import annotations

SEED_TAG = "Answer in the style of an AI Assistant."  # S_a
WEB_TAG = "Answer with knowledge from web search."  # S_w

INFERENCE_TAGS = {
    "both": f"{SEED_TAG} {WEB_TAG}",
    "seed": SEED_TAG,
    "web": WEB_TAG,
    "none": "",
}

ORIGIN_TAGS = {"seed": SEED_TAG, "augmented": WEB_TAG}


def tagged_prompt(instruction: str, tag: str, placement: str = "system") -> list[dict]:
    """The chat prompt for an instruction carrying a tag sentence.

    placement: 'system' puts the tag in the system message; 'append' adds it after the
    instruction; 'none' (or an empty tag) leaves the instruction alone.
    """
    if not tag or placement == "none":
        return [{"role": "user", "content": instruction}]
    if placement == "system":
        return [{"role": "system", "content": tag}, {"role": "user", "content": instruction}]
    if placement == "append":
        return [{"role": "user", "content": f"{instruction}\n\n{tag}"}]
    raise ValueError(f"unknown tag placement {placement!r}: use system, append or none")
