"""Annotation: structured captions from a vision-language model and camera-motion labels.

`captions`       the caption schema, validation/repair, the prompt template, `caption_to_text`
`vlm`            caption backends: a local transformers VLM and any OpenAI-compatible endpoint
`caption_run`    captioning a manifest with a journal so a killed run resumes
`camera_motion`  the 14-class camera-motion classifier (optical flow features + a small head)
"""
