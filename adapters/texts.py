"""Fixed general-English texts: training mix-ins, the anchor against forgetting, and the perplexity sample.

Three separate sets on purpose: the perplexity sample (GENERAL_TEXTS) is never trained on, so the
gate measures damage on text the adapter has not seen.
"""

from __future__ import annotations

# Plain general questions answered plainly. Mixed into training so the adapter does not learn that
# every question is about the glossary (offline-stack.md: after 100 steps at lr 1e-3 a general
# question came back in the glossary's words).
GENERAL_QA: tuple[tuple[str, str], ...] = (
    ("What is a vector database?", "A vector database stores embeddings, lists of numbers that represent "
     "text or images, and finds the ones closest to a query. It is used for semantic search."),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("How many days are in a leap year?", "A leap year has 366 days; February gets a 29th day."),
    ("What does a firewall do?", "A firewall filters network traffic, allowing or blocking connections "
     "according to rules, to keep unwanted traffic out of a network or computer."),
    ("What is photosynthesis?", "Photosynthesis is how plants use sunlight, water and carbon dioxide "
     "to make sugar, releasing oxygen as a by-product."),
    ("Explain what an API is.", "An API, or application programming interface, is a defined way for "
     "one program to ask another for data or actions, without knowing how it works inside."),
    ("What is the boiling point of water?", "At sea level water boils at 100 degrees Celsius, "
     "which is 212 degrees Fahrenheit."),
    ("Give me a tip for writing clear emails.", "Put the request or the main point in the first "
     "sentence, keep it short, and say what you need and by when."),
    ("What is a spreadsheet?", "A spreadsheet is a grid of rows and columns for numbers and text, "
     "with formulas that calculate values from other cells."),
    ("Why is the sky blue?", "Sunlight scatters off the molecules in the air, and blue light "
     "scatters much more than red light, so the sky looks blue."),
    ("What is a password manager?", "A password manager stores your passwords in an encrypted vault "
     "and fills them in for you, so you can use a long, unique password for every site."),
    ("How do I convert kilometres to miles?", "Multiply the kilometres by 0.621. For example, "
     "10 kilometres is about 6.2 miles."),
    ("What is version control?", "Version control records changes to files over time, so you can see "
     "who changed what, go back to an earlier version and merge work from several people."),
    ("Say hello in Spanish.", "Hello in Spanish is \"hola\"."),
    ("What is a meeting agenda?", "An agenda is the list of topics a meeting will cover, in order, "
     "often with the time for each, shared before the meeting."),
    ("What is inflation?", "Inflation is the general rise of prices over time, so the same amount "
     "of money buys less than before."),
)  # fmt: skip

# Plain prose the training keeps the model's predictions close to the base model's on (a KL anchor,
# see adapters/train.py). Distinct from GENERAL_TEXTS, which only ever measures.
ANCHOR_TEXTS: tuple[str, ...] = (
    "Most gardeners plant tomatoes in late spring, once the soil has warmed and the last frost has "
    "passed. The plants need plenty of sun, regular water and a stake or cage to climb, and the first "
    "fruit is usually ready to pick about two months later.",
    "The town council meets on the first Monday of each month in the hall next to the church. Anyone "
    "may attend and ask questions at the end of the meeting, and the minutes are posted on the notice "
    "board by the following Friday.",
    "A good map shows more than roads. Contour lines tell you how steep a hill is, blue lines mark "
    "streams and rivers, and small symbols show churches, campsites and viewpoints along the way.",
    "Coffee was first grown in the highlands of East Africa and later spread across the Arabian "
    "peninsula. Today it is one of the most traded crops in the world, and millions of farmers depend "
    "on it for their living.",
    "Before a long drive, check the tyre pressure, the oil level and the windscreen washer fluid. Plan "
    "a break every two hours, and if you feel tired, stop somewhere safe and rest for a while.",
    "The museum's new exhibition follows the history of flight, from paper kites and hot air balloons "
    "to the first jet engines. Visitors can sit in a real cockpit and try a simple flight simulator.",
    "Learning a musical instrument takes patience. Short, regular practice works better than one long "
    "session a week, and playing along with recordings helps you keep time and enjoy the progress.",
    "When the storm reached the coast, the wind brought down trees and power lines, and several roads "
    "were closed for the night. By morning the sky had cleared and crews were already at work.",
)

# Plain general English, fixed forever: a change here changes every perplexity figure, so a new
# sample must come with re-measured baselines. Topics are deliberately far from any company glossary.
GENERAL_TEXTS: tuple[str, ...] = (
    "The river rises in the hills to the north and runs for about two hundred miles before it reaches "
    "the sea. For most of its length it is slow and wide, and in summer children swim from the sandy "
    "banks while their parents sit in the shade of the willows.",
    "Bread is one of the oldest prepared foods. Flour is mixed with water, salt and yeast, and the dough "
    "is kneaded until it becomes smooth. It is then left to rise for an hour or two, shaped into loaves "
    "and baked in a hot oven until the crust turns golden brown.",
    "When you start a new job, it helps to write down the names of the people you meet and what they "
    "work on. In the first few weeks, ask questions freely: most colleagues are glad to explain how "
    "things are done, and it is much easier to ask early than to guess.",
    "The library opens at nine in the morning and closes at six in the evening, except on Sundays, "
    "when it is closed all day. Members may borrow up to ten books at a time for three weeks, and "
    "books can be renewed online if nobody else has reserved them.",
    "Regular exercise improves sleep, mood and concentration. Even a brisk walk of twenty minutes a day "
    "makes a measurable difference, and it is more important to keep a habit going than to train hard "
    "for a short time and then stop.",
    "The old railway station was built in 1887 from red brick and iron. After the line closed, the town "
    "turned it into a market hall, and today it holds a bakery, a bicycle repair shop and a small cafe "
    "that serves soup and sandwiches at lunchtime.",
)
