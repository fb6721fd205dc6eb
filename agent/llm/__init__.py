"""Talking to a language model, for the llm policy and the text critic.

client.py       one answer from an OpenAI-compatible server or an in-process llama.cpp model
serve.py        start and stop a vLLM / llama.cpp server as a child of rank 0 (agent.policy.serve)
structured.py   the output modes: JSON schema, regex, GBNF grammar, or free text, per server
prompts.py      the prompt, from the words in templates/ (templates/paper/: the paper's Figure 6)
context.py      how many tokens a prompt takes, and what history fits the context window
parser.py       the weights in an answer, or why there are none
concurrency.py  one request per validation image at once, within the boundary's budget
critique.py     a vision-language model's words about each image (an expert of kind text)
"""
